//! The one table of compiled kernel variants, and the choice among them.
//!
//! Element-wise: one compiled configuration per op and type (256 threads, 4 packs of 16
//! bytes per thread and operand, kernels/elementwise.cuh); the variants differ in how the
//! grid is sized, a launch-time choice. A view whose operands are misaligned by different
//! amounts takes the scalar path of the same kernel (not a variant: chosen by address).
//!
//! Reductions: one compiled skeleton per accumulation and input type
//! (kernels/reduce.cuh: 256 threads, 4 loads of 16 bytes in flight per thread); the variants
//! are how a problem is laid onto it, chosen per call by [`ReduceVariant::choose`].

use ckb_common::Gpu;

use crate::launch::{COMBINE_SINGLE_PASS, COMBINE_TWO_STAGE, LAYOUT_COLUMNS, LAYOUT_ROWS_BLOCK, LAYOUT_ROWS_WARP};
use crate::problem::{AxisProblem, ReduceError, ReduceResult, VECTOR_BYTES};

/// How an element-wise launch sizes its grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridPolicy {
    /// One block per tile of 256 x 4 packs; the hardware balances blocks over SMs.
    OneTilePerBlock,
    /// `blocks_per_sm` blocks per SM, each looping over tiles (grid-stride).
    Persistent {
        /// Blocks launched per SM.
        blocks_per_sm: u32,
    },
}

/// An element-wise variant: a name and a grid policy. All run the same compiled kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EwVariant {
    /// Its name in benches, records and [`EwPlan`]'s display.
    pub name: &'static str,
    /// How it sizes its grid.
    pub grid: GridPolicy,
}

/// Every element-wise variant; the first is the default.
pub const EW_VARIANTS: &[EwVariant] = &[
    EwVariant { name: "vec16-tile-per-block", grid: GridPolicy::OneTilePerBlock },
    EwVariant { name: "vec16-persistent-4", grid: GridPolicy::Persistent { blocks_per_sm: 4 } },
    EwVariant { name: "vec16-persistent-8", grid: GridPolicy::Persistent { blocks_per_sm: 8 } },
];

impl Default for EwVariant {
    fn default() -> Self {
        EW_VARIANTS[0]
    }
}

impl EwVariant {
    /// The variant of that name in [`EW_VARIANTS`].
    pub fn by_name(name: &str) -> Option<EwVariant> {
        EW_VARIANTS.iter().copied().find(|v| v.name == name)
    }

    /// The most blocks a launch may use; the kernel loops over what remains.
    pub(crate) fn grid_limit(&self, gpu: &Gpu) -> ReduceResult<i64> {
        Ok(match self.grid {
            GridPolicy::OneTilePerBlock => i64::MAX,
            GridPolicy::Persistent { blocks_per_sm } => gpu.sm_count() as i64 * i64::from(blocks_per_sm),
        })
    }
}

/// What an element-wise call ran. Prints as `vec16-tile-per-block, head 3`,
/// `vec16-tile-per-block, scalar`, `copy` or `empty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EwPlan {
    /// The variant that ran; the default one when no kernel ran (a copy, an empty range).
    pub variant: EwVariant,
    /// How the range was covered.
    pub path: EwPath,
}

/// How an element-wise launch covered its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EwPath {
    /// `head` leading elements one at a time, then 16-byte vectors.
    Vector {
        /// Elements done one at a time before every operand sits on a 16-byte boundary.
        head: usize,
    },
    /// Every element one at a time: the operands sit at different offsets from a 16-byte
    /// boundary, or the range is shorter than its scalar head.
    Scalar,
    /// A cast to the same type: a device-to-device copy, no kernel.
    Copy,
    /// Nothing to do: the range is empty.
    Empty,
}

impl EwPlan {
    /// The plan of a kernel launch over `n` elements whose first `head` take the scalar path.
    pub(crate) fn launched(variant: EwVariant, head: usize, n: usize) -> EwPlan {
        let path = if head >= n { EwPath::Scalar } else { EwPath::Vector { head } };
        EwPlan { variant, path }
    }

    pub(crate) fn without_kernel(path: EwPath) -> EwPlan {
        EwPlan { variant: EwVariant::default(), path }
    }
}

impl std::fmt::Display for EwPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.path {
            EwPath::Vector { head: 0 } => f.write_str(self.variant.name),
            EwPath::Vector { head } => write!(f, "{}, head {head}", self.variant.name),
            EwPath::Scalar => write!(f, "{}, scalar", self.variant.name),
            EwPath::Copy => f.write_str("copy"),
            EwPath::Empty => f.write_str("empty"),
        }
    }
}

/// How a reduction is laid onto the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceVariant {
    /// Rows: one warp per row, reduced with shuffles (short rows).
    WarpPerRow,
    /// Rows: one block per row: shuffles, then the warps' results through shared memory.
    BlockPerRow,
    /// Rows split over several blocks; a second kernel combines their partials.
    SplitTwoStage,
    /// Rows split over several blocks; the last block to finish combines the partials.
    SplitSinglePass,
    /// A strided axis: blocks over 32 column packs x 8 rows, split along the axis when the
    /// columns give too few blocks (then combined by a second kernel).
    Columns,
}

/// Every reduction variant, with the name benches and records use.
pub const REDUCE_VARIANTS: &[(ReduceVariant, &str)] = &[
    (ReduceVariant::WarpPerRow, "warp-per-row"),
    (ReduceVariant::BlockPerRow, "block-per-row"),
    (ReduceVariant::SplitTwoStage, "split-two-stage"),
    (ReduceVariant::SplitSinglePass, "split-single-pass"),
    (ReduceVariant::Columns, "columns"),
];

/// Threads per block and 16-byte loads in flight per thread (kernels/reduce.cuh).
const REDUCE_THREADS: usize = 256;
const REDUCE_UNROLL: usize = 4;
/// Blocks per SM a split aims for: 4 x 256 threads x 4 x 16 bytes = 64 KiB in flight per SM.
const BLOCKS_PER_SM: usize = 4;
/// Rows up to this many bytes go to one warp each.
const WARP_ROW_BYTES: usize = 4096;
/// Column-kernel geometry: packs across, rows of the axis per step.
const COLUMN_LANES: usize = 32;
const COLUMN_ROWS: usize = 8;

/// A variant made concrete for one problem: what the launcher needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReducePlan {
    /// The variant.
    pub variant: ReduceVariant,
    /// Blocks along the reduced axis per output; the fixed split that makes results
    /// reproducible (it depends only on the shape and the device's SM count).
    pub splits: usize,
}

impl std::fmt::Display for ReducePlan {
    /// `split-single-pass x12`: the variant, and its split where it splits.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.variant.name())?;
        if self.splits > 1 {
            write!(f, " x{}", self.splits)?;
        }
        Ok(())
    }
}

impl ReduceVariant {
    /// The variant's name in [`REDUCE_VARIANTS`].
    pub fn name(self) -> &'static str {
        REDUCE_VARIANTS.iter().find(|(v, _)| *v == self).map(|(_, n)| *n).expect("every variant is in the table")
    }

    /// The variant of that name in [`REDUCE_VARIANTS`].
    pub fn by_name(name: &str) -> Option<ReduceVariant> {
        REDUCE_VARIANTS.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
    }

    /// The heuristic: a strided axis takes the column kernel; rows too few to fill the GPU
    /// are split (single-pass, one launch); otherwise short rows go to a warp, long ones
    /// to a block.
    pub fn choose(problem: &AxisProblem, elem_bytes: usize, sm_count: usize) -> ReducePlan {
        if problem.inner > 1 {
            return Self::Columns.plan(problem, elem_bytes, sm_count).expect("columns take any strided problem");
        }
        let split = Self::SplitSinglePass.plan(problem, elem_bytes, sm_count).expect("rows take any split");
        if split.splits > 1 {
            split
        } else if problem.len * elem_bytes <= WARP_ROW_BYTES {
            ReducePlan { variant: Self::WarpPerRow, splits: 1 }
        } else {
            ReducePlan { variant: Self::BlockPerRow, splits: 1 }
        }
    }

    /// This variant on `problem`; fails when it cannot run it (a row variant on a strided
    /// axis, or the column variant on rows).
    pub fn plan(self, problem: &AxisProblem, elem_bytes: usize, sm_count: usize) -> ReduceResult<ReducePlan> {
        let target_blocks = sm_count.max(1) * BLOCKS_PER_SM;
        let pack = VECTOR_BYTES / elem_bytes;
        let is_rows = problem.inner == 1;
        let mismatch = |what| Err(ReduceError::VariantMismatch { variant: self.name(), what });
        let splits = match self {
            Self::Columns if is_rows => return mismatch("a row reduction"),
            Self::Columns => {
                let col_tiles = problem.inner.div_ceil(COLUMN_LANES * pack);
                let blocks = col_tiles.saturating_mul(problem.outer);
                if blocks >= target_blocks {
                    1
                } else {
                    target_blocks.div_ceil(blocks).min(problem.len.div_ceil(COLUMN_ROWS * REDUCE_UNROLL))
                }
            }
            _ if !is_rows => return mismatch("a strided axis"),
            Self::WarpPerRow | Self::BlockPerRow => 1,
            Self::SplitTwoStage | Self::SplitSinglePass => {
                let tiles = (problem.len / pack).div_ceil(REDUCE_THREADS * REDUCE_UNROLL);
                target_blocks.div_ceil(problem.outer).min(tiles)
            }
        };
        Ok(ReducePlan { variant: self, splits: splits.clamp(1, 65535) })
    }
}

impl ReducePlan {
    /// (layout, combine) codes for `ReduceParams`.
    pub(crate) fn codes(&self) -> (i32, i32) {
        match self.variant {
            ReduceVariant::WarpPerRow => (LAYOUT_ROWS_WARP, COMBINE_TWO_STAGE),
            ReduceVariant::BlockPerRow | ReduceVariant::SplitTwoStage => (LAYOUT_ROWS_BLOCK, COMBINE_TWO_STAGE),
            ReduceVariant::SplitSinglePass => (LAYOUT_ROWS_BLOCK, COMBINE_SINGLE_PASS),
            ReduceVariant::Columns => (LAYOUT_COLUMNS, COMBINE_TWO_STAGE),
        }
    }

    /// Whether partials (and, single-pass, arrival counters) are needed.
    pub fn uses_partials(&self) -> bool {
        self.splits > 1
    }

    /// Whether arrival counters are needed: a split single-pass plan.
    pub fn uses_counters(&self) -> bool {
        self.splits > 1 && self.variant == ReduceVariant::SplitSinglePass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H100_SMS: usize = 132;

    #[test]
    fn element_wise_plans_say_what_ran() {
        let variant = EwVariant::default();
        assert_eq!(EwPlan::launched(variant, 0, 100).to_string(), "vec16-tile-per-block");
        assert_eq!(EwPlan::launched(variant, 3, 100).to_string(), "vec16-tile-per-block, head 3");
        // A head that covers the whole range (misaligned operands, or a short one) is scalar.
        assert_eq!(EwPlan::launched(variant, 5, 5).path, EwPath::Scalar);
        assert_eq!(EwPlan::launched(variant, 5, 5).to_string(), "vec16-tile-per-block, scalar");
        assert_eq!(EwPlan::without_kernel(EwPath::Copy).to_string(), "copy");
    }

    #[test]
    fn heuristic_picks_by_shape() {
        let plan =
            |outer, len, inner, bytes| ReduceVariant::choose(&AxisProblem { outer, len, inner }, bytes, H100_SMS);
        // Full reductions split over the GPU, capped by the work.
        assert_eq!(plan(1, 1 << 28, 1, 4), ReducePlan { variant: ReduceVariant::SplitSinglePass, splits: 528 });
        assert_eq!(plan(1, 1 << 20, 1, 4), ReducePlan { variant: ReduceVariant::SplitSinglePass, splits: 256 });
        assert_eq!(plan(1, 1 << 20, 1, 2), ReducePlan { variant: ReduceVariant::SplitSinglePass, splits: 128 });
        // Tiny inputs: one warp.
        assert_eq!(plan(1, 7, 1, 4), ReducePlan { variant: ReduceVariant::WarpPerRow, splits: 1 });
        // The row-sum gate shapes: a block per row.
        assert_eq!(plan(32768, 8192, 1, 4), ReducePlan { variant: ReduceVariant::BlockPerRow, splits: 1 });
        assert_eq!(plan(8192, 32768, 1, 2), ReducePlan { variant: ReduceVariant::BlockPerRow, splits: 1 });
        assert_eq!(plan(65536, 512, 1, 4), ReducePlan { variant: ReduceVariant::WarpPerRow, splits: 1 });
        // The column-sum gate shape: 64 column tiles, split 9 ways along the axis.
        assert_eq!(plan(1, 8192, 8192, 4), ReducePlan { variant: ReduceVariant::Columns, splits: 9 });
    }

    #[test]
    fn variants_refuse_the_wrong_layout() {
        let rows = AxisProblem { outer: 4, len: 100, inner: 1 };
        let cols = AxisProblem { outer: 1, len: 100, inner: 4 };
        assert!(ReduceVariant::Columns.plan(&rows, 4, H100_SMS).is_err());
        assert!(ReduceVariant::WarpPerRow.plan(&cols, 4, H100_SMS).is_err());
        for (v, name) in REDUCE_VARIANTS {
            assert_eq!(ReduceVariant::by_name(name), Some(*v));
        }
    }
}
