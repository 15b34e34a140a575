//! The one table of compiled kernel variants, and the planner that makes one concrete.
//!
//! Every op runs on two skeletons (kernels/rows_kernel.cuh), compiled per op, element type
//! and access pattern, chosen by address, not a variant: 16-byte vectors when every row and
//! parameter is 16-byte aligned and the row length a multiple of the pack; otherwise, for
//! staged rows without column sums, shifted ones (packs on the output row's 16-byte
//! granules, so that a part holds up to a pack less one element fewer than its threads'
//! packs), and element accesses for the rest (warp variants, backward norms):
//!
//! | variant   | skeleton | a row is held by | rows up to (f32 / halves, forward) |
//! |-----------|----------|------------------|-------------------------------------|
//! | lanes-1   | warp     | a lane, its pack the row; 32 rows a warp, times as many as keep 16 bytes a lane in flight; dense rows of element packs through shared-memory tiles (forward only) | 8 |
//! | lanes-L   | warp     | L = 2, 4, 8 or 16 lanes, one 16-byte pack each; 32 / L rows a warp (forward only) | 4L / 8L |
//! | warp-x1   | warp     | a warp, 1 pack of 16 bytes a lane | 128 / 256   |
//! | warp-x2   | warp     | a warp, 2 packs a lane | 256 / 512              |
//! | warp-x4   | warp     | a warp, 4 packs a lane | 512 / 1024             |
//! | warp-x8   | warp     | a warp, 8 packs a lane (f32 forward only) | 1024 |
//! | block     | staged   | one CTA, the row in shared memory (up to 64 KiB) | 16384 / 32768 |
//! | cluster   | staged   | a cluster of 2-8 CTAs of 32 KiB parts, or up to 16 of 64 KiB; statistics through distributed shared memory | 262144 / 524288 |
//! | split     | staged   | 2+ independent CTAs, statistics through global memory, row read twice | any |
//!
//! A warp lane holds 32 row elements in forward ops and 16 (per operand) in backward ops. A
//! staged CTA holds its part in shared memory and takes it through registers 16 elements
//! per thread at a time (a chunk), once for the statistics and again for the outputs;
//! forward CTAs have up to 256 threads, so that three share an SM. Backward parts are one
//! chunk per thread of up to 512 threads (their column sums stay in registers).
//!
//! The [`Planner`] decides everything a launch does, and the launchers run its [`NormPlan`]
//! as given or refuse it; they never re-plan. From the row length it takes the variant's
//! shape (parts, threads, packs); from the device's occupancy ([`Residency`]) the staging
//! depth (`Staging`: 16-byte rows, the one that puts the most rows in flight per SM;
//! shifted rows, the one with the most CTAs per SM; element rows stage synchronously) and
//! the persistent grid (as many row
//! slots as are resident at once). [`Planner::choose`] takes the first of lanes (fewest lanes
//! that hold the row), warp (fewest packs), block, cluster, split that holds the row and that
//! the device can run: where no GPC holds a cluster, that is split.

use std::fmt;

use ckb_common::{DType, Gpu, GpuError};
use cudarc::driver::sys::CUdevice_attribute;

use crate::launch::{LAYOUT_CTA_PER_ROW, LAYOUT_WARP_PER_ROW, MODE_CLUSTER, MODE_SPLIT, MODE_WHOLE};
use crate::problem::{NormError, NormOp, NormResult, Refusal, RowsProblem};

/// How a row operation is laid onto the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NormVariant {
    /// Short forward rows: `lanes` lanes of a warp per row, one 16-byte pack each, so that
    /// a warp holds 32 / `lanes` rows.
    Lanes {
        /// Lanes per row: 1, 2, 4, 8 or 16.
        lanes: usize,
    },
    /// One warp per row, `packs` 16-byte packs per lane in registers.
    Warp {
        /// 16-byte packs a lane holds: 1, 2, 4 or 8.
        packs: usize,
    },
    /// One CTA per row, staged in shared memory.
    Block,
    /// A thread-block cluster per row.
    Cluster,
    /// Several independent CTAs per row, two launches.
    Split,
}

/// Every variant, with the name benches and records use.
pub const NORM_VARIANTS: &[(NormVariant, &str)] = &[
    (NormVariant::Lanes { lanes: 1 }, "lanes-1"),
    (NormVariant::Lanes { lanes: 2 }, "lanes-2"),
    (NormVariant::Lanes { lanes: 4 }, "lanes-4"),
    (NormVariant::Lanes { lanes: 8 }, "lanes-8"),
    (NormVariant::Lanes { lanes: 16 }, "lanes-16"),
    (NormVariant::Warp { packs: 1 }, "warp-x1"),
    (NormVariant::Warp { packs: 2 }, "warp-x2"),
    (NormVariant::Warp { packs: 4 }, "warp-x4"),
    (NormVariant::Warp { packs: 8 }, "warp-x8"),
    (NormVariant::Block, "block"),
    (NormVariant::Cluster, "cluster"),
    (NormVariant::Split, "split"),
];

/// The longest row a `lanes-1` lane holds (`kLaneRowElems`): a pack of halves, two of f32
/// (which then take element accesses, through shared-memory tiles where rows are dense).
const LANE_ROW_ELEMS: usize = 8;
/// Element packs a lane of a group (`lanes-2` to `lanes-16`) takes on f32 rows without 16-byte
/// vectors, beside the 16-byte pack: a row's share of a lane where the next narrower group
/// would not hold it (`launch_lane_group`).
const LANE_GROUP_WIDTHS: std::ops::RangeInclusive<usize> = 5..=LANE_ROW_ELEMS;
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
/// (backward; `kMaxThreads`), and the most forward staged CTAs take (`kStagedMaxThreads`).
const WARP_ROWS_PER_CTA: usize = 4;
const MAX_THREADS: usize = 512;
const FORWARD_THREADS: usize = 256;
/// The deepest staging ring the staged kernel holds (`kMaxStages`).
pub const MAX_STAGES: usize = 4;
/// Shared memory a staged CTA keeps beside its ring (`kStaticSmemReserve`): the ring may
/// take the device's opt-in limit less this.
pub const STATIC_SMEM_RESERVE: usize = 2048;
/// The largest cluster (16 needs the non-portable cluster size, which Hopper allows).
const MAX_CLUSTER: usize = 16;
/// gridDim.y
const MAX_SLOTS: usize = 65535;
/// Hopper's residency limits.
const MAX_THREADS_PER_SM: usize = 2048;
const MAX_CTAS_PER_SM: usize = 32;
/// Backward warp-per-row CTAs write one row of column sums each: cap them at this many per
/// SM so that the sums stay small next to the matrix.
const COLUMN_SUM_CTAS_PER_SM: usize = 8;

/// The planner's tuning knobs. The defaults are the tuned ones; tuning runs override them
/// through the environment ([`Tuning::from_env`], read once per [`crate::Normalizer`]) or
/// [`crate::Normalizer::with_tuning`]. Nothing else reads them: the kernels get the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// The longest part of a row a forward staged CTA holds, in bytes (`CKB_NORM_PART_KIB`).
    /// Parts whose staging exceeds the device's shared memory are refused, not shrunk.
    pub part_bytes: usize,
    /// The most threads of a forward staged CTA: a multiple of 32 up to 256 (`CKB_NORM_THREADS`).
    pub threads: usize,
    /// Row elements a forward staged thread aims at, a multiple of 16 up to 1024
    /// (`CKB_NORM_THREAD_ELEMS`); `None`: the tuned ones per type (`HALF_THREAD_ELEMS`,
    /// `F32_THREAD_ELEMS`).
    pub thread_elems: Option<usize>,
    /// The deepest staging ring the depth choice considers, 1..=[`MAX_STAGES`] (`CKB_NORM_MAX_STAGES`).
    pub max_stages: usize,
    /// A depth to take wherever it fits (shared memory, one resident CTA), 1..=[`MAX_STAGES`],
    /// even past `max_stages` (`CKB_NORM_STAGES`); `None`: the depth choice.
    pub stages: Option<usize>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            part_bytes: FORWARD_PART_BYTES,
            threads: FORWARD_THREADS,
            thread_elems: None,
            max_stages: MAX_STAGES,
            stages: None,
        }
    }
}

/// Whether `n` is a multiple of `d`, a power of two (a bit test: `is_multiple_of` is newer
/// than our MSRV).
const fn multiple_of(n: usize, d: usize) -> bool {
    n & (d - 1) == 0
}

/// The ranges [`Tuning::validate`] admits; `from_lookup` drops values outside them.
fn valid_threads(t: usize) -> bool {
    (32..=FORWARD_THREADS).contains(&t) && multiple_of(t, 32)
}
fn valid_thread_elems(e: usize) -> bool {
    (CHUNK_ELEMS..=1024).contains(&e) && multiple_of(e, CHUNK_ELEMS)
}
fn valid_stages(s: usize) -> bool {
    (1..=MAX_STAGES).contains(&s)
}

impl Tuning {
    /// The defaults, with whichever of `CKB_NORM_PART_KIB` (1..=200), `CKB_NORM_THREADS`,
    /// `CKB_NORM_THREAD_ELEMS`, `CKB_NORM_MAX_STAGES` and `CKB_NORM_STAGES` the environment
    /// sets (ranges on the fields); values outside their range are ignored.
    pub fn from_env() -> Tuning {
        Tuning::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Tuning::from_env`] with the variables looked up by `var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Tuning {
        let var = |name: &str| var(name).and_then(|v| v.trim().parse::<usize>().ok());
        let mut tuning = Tuning::default();
        if let Some(kib) = var("CKB_NORM_PART_KIB").filter(|k| (1..=200).contains(k)) {
            tuning.part_bytes = kib * 1024;
        }
        if let Some(threads) = var("CKB_NORM_THREADS").filter(|t| valid_threads(*t)) {
            tuning.threads = threads;
        }
        if let Some(elems) = var("CKB_NORM_THREAD_ELEMS").filter(|e| valid_thread_elems(*e)) {
            tuning.thread_elems = Some(elems);
        }
        if let Some(cap) = var("CKB_NORM_MAX_STAGES").filter(|s| valid_stages(*s)) {
            tuning.max_stages = cap;
        }
        if let Some(stages) = var("CKB_NORM_STAGES").filter(|s| valid_stages(*s)) {
            tuning.stages = Some(stages);
        }
        tuning
    }

    /// Fails with [`NormError::BadTuning`] on a field outside its range.
    pub fn validate(&self) -> NormResult<()> {
        let bad = |what| Err(NormError::BadTuning { tuning: *self, what });
        if self.part_bytes == 0 {
            return bad("parts of no bytes");
        }
        if !valid_threads(self.threads) {
            return bad("threads outside 32..=256 or not a multiple of 32");
        }
        if !self.thread_elems.is_none_or(valid_thread_elems) {
            return bad("thread elements outside 16..=1024 or not a multiple of 16");
        }
        if !valid_stages(self.max_stages) || !self.stages.is_none_or(valid_stages) {
            return bad("a staging depth outside 1..=4");
        }
        Ok(())
    }
}

/// What the planner knows of the device beside occupancy: queried once per [`crate::Normalizer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Streaming multiprocessors.
    pub sm_count: usize,
    /// Dynamic shared memory a staged CTA may take: the opt-in limit per block less
    /// [`STATIC_SMEM_RESERVE`].
    pub max_dynamic_smem: usize,
}

impl DeviceLimits {
    /// The limits of a device with `sm_count` SMs and `smem_optin` bytes of shared memory a
    /// block may opt into.
    pub fn new(sm_count: usize, smem_optin: usize) -> DeviceLimits {
        DeviceLimits { sm_count: sm_count.max(1), max_dynamic_smem: smem_optin.saturating_sub(STATIC_SMEM_RESERVE) }
    }

    /// The limits of the stream's device.
    pub fn query(gpu: &Gpu) -> NormResult<DeviceLimits> {
        let attr = |a| gpu.ctx.attribute(a).map_err(GpuError::from);
        let optin = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?;
        Ok(DeviceLimits::new(gpu.sm_count(), optin.max(0) as usize))
    }
}

/// One staged kernel configuration, as the planner asks the device about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StagedKernel {
    /// The op whose kernel it is (log-softmax asks as softmax: they share a kernel).
    pub op: NormOp,
    /// Its element type.
    pub dtype: DType,
    /// The 16-byte instantiation, or the element one.
    pub vectorized: bool,
    /// Threads per CTA.
    pub threads: usize,
    /// Dynamic shared memory per CTA: the whole staging ring.
    pub smem_bytes: usize,
}

/// The device's occupancy, as the planner needs it. [`crate::Normalizer`] answers through the
/// CUDA occupancy API, once per configuration; tests and tools may plug in a model.
pub trait Residency {
    /// CTAs of `kernel` resident on one SM at once (0: none fits).
    fn ctas_per_sm(&self, kernel: &StagedKernel) -> NormResult<usize>;
    /// Clusters of `parts` CTAs of `kernel` resident on the device at once (0: no GPC
    /// holds one).
    fn clusters(&self, kernel: &StagedKernel, parts: usize) -> NormResult<usize>;
}

/// Everything a launch does, decided by the [`Planner`]; the launchers run it as given.
/// Calls return the plan that ran; [`std::fmt::Display`] gives a short description, e.g.
/// `cluster x8, 256 thr, 64 KiB parts, 2 stages, 16-byte accesses, 49 slots`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormPlan {
    /// The variant it makes concrete.
    pub variant: NormVariant,
    /// Vector accesses (aligned buffers, rows a whole number of packs), else element ones.
    pub vectorized: bool,
    /// Packs a thread holds per row operand.
    pub packs: usize,
    /// Elements of a pack: 16 bytes of them, but where a lane holds a whole short row
    /// (`lanes-1`), the row's length, so that its slots are its columns: no dead slots and
    /// no per-element predicates (and on aligned rows of a power of two of bytes, one
    /// vector access: 4 bytes for a bf16 row of 2).
    pub width: usize,
    /// Rows a lane holds at once: 1, but for `lanes-1` packs under 16 bytes as many as
    /// make 16 bytes (`kLaneRows`), so that a lane keeps 16 bytes in flight.
    pub lane_rows: usize,
    /// Threads per CTA.
    pub threads: usize,
    /// CTAs per row: 1, the cluster size or the split count.
    pub parts: usize,
    /// Rows the staging ring holds (1 for warp variants and element rows).
    pub stages: usize,
    /// Row slots of the grid (gridDim.y); staged variants: the ones resident at once.
    pub slots: usize,
}

impl NormVariant {
    /// The variant's name in [`NORM_VARIANTS`].
    pub fn name(self) -> &'static str {
        NORM_VARIANTS.iter().find(|(v, _)| *v == self).map(|(_, n)| *n).expect("every variant is in the table")
    }

    /// The variant named `name` in [`NORM_VARIANTS`].
    pub fn by_name(name: &str) -> Option<NormVariant> {
        NORM_VARIANTS.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
    }
}

/// Turns a variant into a [`NormPlan`] for one problem, from the tuning, the device's limits
/// and its occupancy.
pub struct Planner<'a, R: Residency + ?Sized> {
    /// The device's SMs and shared memory.
    pub limits: DeviceLimits,
    /// The knobs of forward staged CTAs and of the staging depth.
    pub tuning: Tuning,
    /// The device's occupancy.
    pub residency: &'a R,
}

impl<R: Residency + ?Sized> Planner<'_, R> {
    /// The heuristic: the first of warp (fewest packs that hold the row), block, cluster,
    /// split whose plan the row and the device admit. `aligned`: every buffer starts on a 16-byte
    /// boundary. Fails only where no variant's plan runs here, with the last refusal.
    pub fn choose(&self, op: NormOp, problem: &RowsProblem, dtype: DType, aligned: bool) -> NormResult<NormPlan> {
        let mut last = None;
        for (variant, _) in NORM_VARIANTS {
            match self.plan(*variant, op, problem, dtype, aligned) {
                Ok(plan) => return Ok(plan),
                Err(e @ (NormError::VariantMismatch { .. } | NormError::PlanRefused { .. })) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("the table has variants"))
    }

    /// `variant`'s plan for `problem` (a valid one; empty rows plan as rows of one element).
    /// Fails with [`NormError::VariantMismatch`] when the variant cannot hold the row
    /// (or, for warp-x8, the op's register budget has no 8 packs), and with
    /// [`NormError::PlanRefused`] when the device cannot run its plan.
    pub fn plan(
        &self,
        variant: NormVariant,
        op: NormOp,
        problem: &RowsProblem,
        dtype: DType,
        aligned: bool,
    ) -> NormResult<NormPlan> {
        let width = pack_width(variant, problem, dtype, aligned);
        let vectorized = aligned
            && (width * dtype.size_bytes()).is_power_of_two()
            && width * dtype.size_bytes() <= 16
            && multiple_of(problem.cols, width)
            && multiple_of(problem.row_stride, width);
        let plan = self.shape(variant, op, problem, dtype, width, vectorized)?;
        if plan.is_warp_layout() {
            Ok(plan)
        } else {
            self.place(plan, op, dtype)
        }
    }

    /// The variant's shape from the row length: packs, threads, parts, and slots (staged
    /// variants: an upper bound by the thread limit, which `place` lowers to residency).
    fn shape(
        &self,
        variant: NormVariant,
        op: NormOp,
        problem: &RowsProblem,
        dtype: DType,
        width: usize,
        vectorized: bool,
    ) -> NormResult<NormPlan> {
        let (tuning, sm_count) = (&self.tuning, self.limits.sm_count.max(1));
        let pack = 16 / dtype.size_bytes();
        let cols = problem.cols.max(1);
        let rows = problem.rows.max(1);
        // Columns a staged plan must cover: shifted packs start up to a pack less one before
        // the row (warp lanes take strided element accesses on unaligned rows).
        let shifted_span = if !vectorized && op.column_sums() == 0 { cols + pack - 1 } else { cols };
        let mismatch = |what: String| Err(NormError::VariantMismatch { variant: variant.name(), op: op.name(), what });
        // Rows a lane holds at once (`kLaneRows`): a lane per row, 16 bytes of them; lane
        // groups of f32 element packs, enough that a warp's rows span whole 16-byte vectors of
        // its shared-memory tile (f32: 2 at the most, for 16 lanes).
        let lane_rows = match variant {
            NormVariant::Lanes { lanes: 1 } => 16 / (width * dtype.size_bytes()),
            NormVariant::Lanes { lanes } if !vectorized && group_element_packs(dtype) => {
                16 / (32 / lanes * dtype.size_bytes())
            }
            _ => 1,
        };
        let lane_rows = lane_rows.max(1);
        let plan = |packs, threads, parts, slots| {
            Ok(NormPlan { variant, vectorized, packs, width, lane_rows, threads, parts, stages: 1, slots })
        };
        // Staged CTAs: the most elements a part takes, the most threads, the elements a
        // thread aims at, and (threads, packs) for `parts` parts. Forward parts share their
        // bytes among the row operands (fused adds stage x and the residual).
        let operand_bytes = |bytes: usize| bytes / op.row_inputs();
        let (part_capacity, max_threads, thread_elems) = if op.is_forward() {
            let tuned = if dtype.size_bytes() >= 4 { F32_THREAD_ELEMS } else { HALF_THREAD_ELEMS };
            let elems = tuning.thread_elems.unwrap_or(tuned).max(1);
            ((operand_bytes(tuning.part_bytes) / dtype.size_bytes()).max(CHUNK_ELEMS), tuning.threads.max(32), elems)
        } else {
            (MAX_THREADS * CHUNK_ELEMS, MAX_THREADS, CHUNK_ELEMS)
        };
        let chunk_packs = CHUNK_ELEMS / pack;
        let staged_shape = |parts: usize| {
            let part = shifted_span.div_ceil(parts);
            let threads = (part.div_ceil(thread_elems).div_ceil(32).max(1) * 32).min(max_threads);
            (threads, part.div_ceil(threads * CHUNK_ELEMS) * chunk_packs)
        };
        // The staged grid is persistent: at most the CTAs that fit on the GPU at once by
        // the thread limit (`place` lowers it to the real occupancy).
        let staged_slots = |threads: usize, parts: usize| {
            let per_sm = (MAX_THREADS_PER_SM / threads).min(MAX_CTAS_PER_SM);
            (sm_count * per_sm / parts).clamp(1, rows.min(MAX_SLOTS))
        };
        let staged = |parts: usize| {
            let (threads, packs) = staged_shape(parts);
            plan(packs, threads, parts, staged_slots(threads, parts))
        };
        let parts = shifted_span.div_ceil(part_capacity);
        let cluster_parts = {
            let small = shifted_span.div_ceil(
                (operand_bytes(CLUSTER_PART_BYTES.min(tuning.part_bytes)) / dtype.size_bytes()).max(CHUNK_ELEMS),
            );
            if op.is_forward() && small <= SMALL_CLUSTER {
                small
            } else {
                parts
            }
        };
        match variant {
            NormVariant::Lanes { lanes } => {
                if !op.is_forward() {
                    return mismatch("backward ops keep column sums per lane: a whole warp per row".into());
                }
                let holds = if lanes == 1 || (!vectorized && group_element_packs(dtype)) {
                    lanes * LANE_ROW_ELEMS
                } else {
                    lanes * pack
                };
                if cols > holds {
                    return mismatch(format!("{cols}-element rows ({dtype}): {lanes} lanes hold {holds}"));
                }
                let rows_per_cta = WARP_ROWS_PER_CTA * (32 / lanes) * lane_rows;
                plan(1, 32 * WARP_ROWS_PER_CTA, 1, rows.div_ceil(rows_per_cta).min(MAX_SLOTS))
            }
            NormVariant::Warp { packs } => {
                let max_packs = if op.is_forward() { FORWARD_ELEMS } else { BACKWARD_ELEMS } / pack;
                if packs > max_packs {
                    return mismatch(format!(
                        "{dtype}: {packs} packs a lane exceed its register budget of {max_packs}"
                    ));
                }
                if cols > 32 * packs * pack {
                    let holds = 32 * packs * pack;
                    return mismatch(format!("{cols}-element rows ({dtype}): a warp holds {holds}"));
                }
                let mut slots = rows.div_ceil(WARP_ROWS_PER_CTA).min(MAX_SLOTS);
                if op.column_sums() > 0 {
                    slots = slots.min(sm_count * COLUMN_SUM_CTAS_PER_SM);
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

    /// A staged plan on this device: its depth, and its grid lowered to the row slots that
    /// are resident at once; refused where the ring exceeds shared memory, no CTA fits on
    /// an SM, or (cluster) no GPC holds a cluster.
    fn place(&self, mut plan: NormPlan, op: NormOp, dtype: DType) -> NormResult<NormPlan> {
        let refused = |plan, reason| Err(NormError::PlanRefused { op: op.name(), plan, reason });
        let limit = self.limits.max_dynamic_smem;
        let stage_bytes = plan.stage_bytes(op);
        if stage_bytes > limit {
            return refused(plan, Refusal::SharedMemory { needed: stage_bytes, limit });
        }
        let (vectorized, threads) = (plan.vectorized, plan.threads);
        let kernel = |stages: usize| StagedKernel {
            op: if op == NormOp::LogSoftmax { NormOp::Softmax } else { op },
            dtype,
            vectorized,
            threads,
            smem_bytes: stages * stage_bytes,
        };
        let staging = if vectorized {
            Staging::Bulk
        } else if plan.shifted(op) {
            Staging::Shifted
        } else {
            Staging::Plain
        };
        plan.stages = self.depth(staging, stage_bytes, &kernel)?;
        let kernel = kernel(plan.stages);
        // Row slots resident at once; independent CTAs of rows split wider than the GPU
        // holds run in waves on one slot.
        let resident = if plan.variant == NormVariant::Cluster {
            match self.residency.clusters(&kernel, plan.parts)? {
                0 => return refused(plan, Refusal::ClusterNotResident),
                clusters => clusters,
            }
        } else {
            match self.residency.ctas_per_sm(&kernel)? {
                0 => return refused(plan, Refusal::NotResident),
                per_sm => (per_sm * self.limits.sm_count / plan.parts).max(1),
            }
        };
        plan.slots = plan.slots.min(resident);
        Ok(plan)
    }

    /// The staging depth (1..=max_stages) by `staging`'s rule, unless the tuning forces
    /// one that fits.
    fn depth(&self, staging: Staging, stage_bytes: usize, kernel: &dyn Fn(usize) -> StagedKernel) -> NormResult<usize> {
        if staging == Staging::Plain {
            return Ok(1);
        }
        let fits = |depth: usize| depth * stage_bytes <= self.limits.max_dynamic_smem;
        if let Some(forced) = self.tuning.stages.filter(|s| fits(*s)) {
            if self.residency.ctas_per_sm(&kernel(forced))? > 0 {
                return Ok(forced);
            }
        }
        let (mut stages, mut best) = (1, (0, 0));
        for depth in (1..=self.tuning.max_stages.min(MAX_STAGES)).take_while(|d| fits(*d)) {
            let ctas = self.residency.ctas_per_sm(&kernel(depth))?;
            // Keys compared in order; a strictly greater one wins.
            let key = match staging {
                Staging::Bulk => (ctas * depth, 0),
                Staging::Shifted => (ctas, depth),
                Staging::Plain => unreachable!("one stage"),
            };
            if ctas > 0 && key > best {
                (stages, best) = (depth, key);
            }
        }
        Ok(stages)
    }
}

/// How a staged plan fills its ring, which sets the rule for its depth ([`Planner::depth`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Staging {
    /// 16-byte rows, one bulk copy a row: the depth that puts the most rows in flight per SM
    /// (CTAs x stages), ties to fewer stages (independent CTAs also overlap one another's
    /// reductions and barriers, a deeper ring only the loads).
    Bulk,
    /// Shifted rows (unaligned, forward): the depth with the most CTAs per SM, ties to the
    /// deeper ring. Their CTAs are short of issue slots, not of bytes in flight: on the
    /// H200, bf16 rows of 4098 on 96 threads ran at 0.54 of copy (softmax) and 0.32
    /// (layernorm) as 6 CTAs x 4 stages, 0.60 and 0.36 as 10 and 8 x 2; rows of 50257 and
    /// 131075 gained 3-35% from 4 and 2 stages to 1 (f32 rows of 4098 lost 2%).
    Shifted,
    /// Element rows (backward, unaligned): plain loads, one stage.
    Plain,
}

/// Whether lane groups of `dtype` rows take element packs sized to the row, and tiles
/// (`kGroupElementPacks`): f32 only, halves measured slower that way.
fn group_element_packs(dtype: DType) -> bool {
    dtype == DType::F32
}

/// Elements of a pack of `variant` on `problem`'s rows (`NormPlan::width`): 16 bytes of
/// them but for short rows. A `lanes-1` lane's pack is the row (up to [`LANE_ROW_ELEMS`]);
/// a lane group's, on f32 rows that take no 16-byte vectors, the row's share of a lane
/// where that is [`LANE_GROUP_WIDTHS`] (rows of 33 on 16 lanes of 4 had left 31 of 64 slots
/// predicated off; [`group_element_packs`]).
fn pack_width(variant: NormVariant, problem: &RowsProblem, dtype: DType, aligned: bool) -> usize {
    let pack = 16 / dtype.size_bytes();
    let cols = problem.cols.max(1);
    let vector_rows = aligned && multiple_of(cols, pack) && multiple_of(problem.row_stride, pack);
    match variant {
        NormVariant::Lanes { lanes: 1 } => cols.clamp(1, LANE_ROW_ELEMS),
        NormVariant::Lanes { lanes } if !vector_rows && group_element_packs(dtype) => {
            let share = cols.div_ceil(lanes);
            if LANE_GROUP_WIDTHS.contains(&share) {
                share
            } else {
                pack
            }
        }
        _ => pack,
    }
}

impl NormPlan {
    /// (layout, mode) codes for `RowParams`.
    pub(crate) fn codes(&self) -> (i32, i32) {
        match self.variant {
            NormVariant::Lanes { .. } | NormVariant::Warp { .. } => (LAYOUT_WARP_PER_ROW, MODE_WHOLE),
            NormVariant::Block => (LAYOUT_CTA_PER_ROW, MODE_WHOLE),
            NormVariant::Cluster => (LAYOUT_CTA_PER_ROW, MODE_CLUSTER),
            NormVariant::Split => (LAYOUT_CTA_PER_ROW, MODE_SPLIT),
        }
    }

    /// Whether it runs on the warp skeleton (`lanes-*` and `warp-*`).
    pub fn is_warp_layout(&self) -> bool {
        matches!(self.variant, NormVariant::Lanes { .. } | NormVariant::Warp { .. })
    }

    /// Lanes of a warp per row: 32 for `warp-*`, fewer for `lanes-*` (staged variants: 32).
    pub fn lanes(&self) -> usize {
        match self.variant {
            NormVariant::Lanes { lanes } => lanes,
            _ => 32,
        }
    }

    /// Rows a CTA holds at once (warp variants; staged: 1).
    pub fn rows_per_cta(&self) -> usize {
        if self.is_warp_layout() {
            WARP_ROWS_PER_CTA * (32 / self.lanes()) * self.lane_rows
        } else {
            1
        }
    }

    /// Bytes of one row operand a CTA holds: a row of a warp's lane group (times the CTA's
    /// rows), or a staged CTA's part.
    pub fn part_bytes(&self) -> usize {
        let group = if self.is_warp_layout() { self.lanes() } else { self.threads };
        group * self.packs * 16
    }

    /// Whether `op`'s rows take shifted accesses: unaligned staged rows without column sums
    /// (`shifted_rows` in kernels/rows_kernel.cuh).
    pub fn shifted(&self, op: NormOp) -> bool {
        !self.vectorized && op.column_sums() == 0 && !self.is_warp_layout()
    }

    /// Shared memory of one stage of the ring: every row operand's part, shifted ones a
    /// granule more, staged at their input's alignment (0 for warp variants).
    pub fn stage_bytes(&self, op: NormOp) -> usize {
        match self.variant {
            NormVariant::Lanes { .. } | NormVariant::Warp { .. } => 0,
            _ => op.row_inputs() * (self.part_bytes() + if self.shifted(op) { 16 } else { 0 }),
        }
    }

    /// Dynamic shared memory per CTA: the whole ring.
    pub fn smem_bytes(&self, op: NormOp) -> usize {
        self.stages * self.stage_bytes(op)
    }

    /// Floats of per-row partial statistics a split needs.
    pub fn row_partial_floats(&self, rows: usize) -> usize {
        if self.variant == NormVariant::Split {
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

impl fmt::Display for NormPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = if self.vectorized { "16-byte" } else { "element" };
        if self.is_warp_layout() {
            // A lane per row: its pack is sized to the row, and its vectors to the pack.
            let access = match (self.variant, self.vectorized) {
                (NormVariant::Lanes { lanes: 1 }, true) => format!("{}-element packs, vector", self.width),
                (NormVariant::Lanes { .. }, false) => format!("{}-element packs, element", self.width),
                _ => access.to_string(),
            };
            return write!(
                f,
                "{}, {} thr ({} rows a CTA), {access} accesses, {} slots",
                self.variant.name(),
                self.threads,
                self.rows_per_cta(),
                self.slots
            );
        }
        write!(f, "{}", self.variant.name())?;
        if self.parts > 1 {
            write!(f, " x{}", self.parts)?;
        }
        let part = self.part_bytes();
        let part = if multiple_of(part, 1024) { format!("{} KiB", part / 1024) } else { format!("{part} B") };
        let stages = if self.stages == 1 { "stage" } else { "stages" };
        write!(
            f,
            ", {} thr, {part} parts, {} {stages}, {access} accesses, {} slots",
            self.threads, self.stages, self.slots
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H100_SMS: usize = 132;
    /// Shared memory of an H100 SM, for the model below.
    const SM_SMEM: usize = 228 * 1024;

    /// Occupancy by the thread, CTA and shared-memory limits (each CTA also reserving
    /// STATIC_SMEM_RESERVE); clusters: a quarter of the CTAs, or none.
    struct Model {
        clusters: bool,
    }

    impl Residency for Model {
        fn ctas_per_sm(&self, k: &StagedKernel) -> NormResult<usize> {
            let by_smem = SM_SMEM / (k.smem_bytes + STATIC_SMEM_RESERVE);
            Ok((MAX_THREADS_PER_SM / k.threads).min(MAX_CTAS_PER_SM).min(by_smem))
        }
        fn clusters(&self, k: &StagedKernel, parts: usize) -> NormResult<usize> {
            Ok(if self.clusters { H100_SMS * self.ctas_per_sm(k)? / parts / 4 } else { 0 })
        }
    }

    const ROOMY: Model = Model { clusters: true };

    fn planner(residency: &Model, tuning: Tuning) -> Planner<'_, Model> {
        Planner { limits: DeviceLimits::new(H100_SMS, 227 * 1024), tuning, residency }
    }

    fn choose(op: NormOp, rows: usize, cols: usize, dtype: DType) -> NormPlan {
        planner(&ROOMY, Tuning::default()).choose(op, &RowsProblem::dense(rows, cols), dtype, true).unwrap()
    }

    fn force(variant: NormVariant, op: NormOp, problem: RowsProblem, dtype: DType) -> NormResult<NormPlan> {
        planner(&ROOMY, Tuning::default()).plan(variant, op, &problem, dtype, true)
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
    fn short_rows_share_a_warp() {
        use NormOp::*;
        let lanes = |op, cols, dtype| choose(op, 4096, cols, dtype).variant;
        // Unaligned short rows take element accesses, as many columns as lanes hold.
        assert_eq!(lanes(Softmax, 4, DType::F32), NormVariant::Lanes { lanes: 1 });
        assert_eq!(lanes(Softmax, 2, DType::F32), NormVariant::Lanes { lanes: 1 });
        assert_eq!(lanes(LayerNorm, 7, DType::BF16), NormVariant::Lanes { lanes: 1 });
        assert_eq!(lanes(LayerNorm, 1023, DType::BF16), NormVariant::Warp { packs: 4 });
        assert_eq!(lanes(RmsNorm, 33, DType::BF16), NormVariant::Lanes { lanes: 8 });
        // f32 rows of 33: 8 lanes of 5-element packs (16 lanes of 4 left 31 of 64 slots idle).
        assert_eq!(lanes(RmsNorm, 33, DType::F32), NormVariant::Lanes { lanes: 8 });
        assert_eq!(lanes(Softmax, 129, DType::BF16), NormVariant::Warp { packs: 1 });
        // 8 rows a warp of 4 lanes: 32 rows a CTA.
        let plan = choose(Softmax, 100, 32, DType::BF16);
        assert_eq!((plan.lanes(), plan.slots), (4, 4), "{plan:?}");
        assert_eq!(plan.to_string(), "lanes-4, 128 thr (32 rows a CTA), 16-byte accesses, 4 slots");
        // Backward rows keep whole warps.
        assert_eq!(lanes(SoftmaxBackward, 7, DType::F32), NormVariant::Warp { packs: 1 });
        // A lane per row: its pack is the row, one vector access where that is a power of
        // two of bytes.
        let width = |cols, dtype| {
            let plan = choose(LayerNorm, 4096, cols, dtype);
            (plan.width, plan.vectorized)
        };
        assert_eq!(width(1, DType::BF16), (1, true));
        assert_eq!(width(2, DType::BF16), (2, true));
        assert_eq!(width(3, DType::BF16), (3, false));
        assert_eq!(width(4, DType::BF16), (4, true));
        assert_eq!(width(7, DType::BF16), (7, false));
        assert_eq!(width(2, DType::F32), (2, true));
        assert_eq!(width(7, DType::F32), (7, false));
        assert_eq!(width(8, DType::F32), (8, false));
        // Lane groups keep 16-byte packs on rows of vectors and halves, else take the row's share.
        assert_eq!(width(32, DType::BF16), (8, true));
        assert_eq!(width(33, DType::BF16), (8, false));
        assert_eq!(width(33, DType::F32), (5, false));
        assert_eq!(
            choose(Softmax, 4096, 2, DType::BF16).to_string(),
            "lanes-1, 128 thr (512 rows a CTA), 2-element packs, vector accesses, 8 slots"
        );
    }

    #[test]
    fn fused_adds_share_a_part_between_their_two_operands() {
        // x and the residual staged: a part's bytes go half to each, so a 64 KiB bf16 row
        // (one CTA unfused) takes a cluster, of 16 KiB parts (its small parts, halved).
        let p = choose(NormOp::AddRmsNorm, 4096, 8192, DType::BF16);
        assert_eq!((p.variant, p.parts), (NormVariant::Block, 1), "{p:?}");
        assert_eq!(p.stage_bytes(NormOp::AddRmsNorm), 2 * p.part_bytes());
        let p = choose(NormOp::AddLayerNorm, 1024, 32768, DType::BF16);
        assert_eq!((p.variant, p.parts, p.part_bytes()), (NormVariant::Cluster, 4, 16 * 1024), "{p:?}");
        assert_eq!(choose(NormOp::LayerNorm, 1024, 32768, DType::BF16).variant, NormVariant::Block);
        // Short rows share warps as the plain forward ops do.
        assert_eq!(choose(NormOp::AddRmsNorm, 4096, 7, DType::BF16).variant, NormVariant::Lanes { lanes: 1 });
    }

    #[test]
    fn backward_holds_one_chunk_per_thread() {
        let p = choose(NormOp::LayerNormBackward, 64, 4096, DType::F32);
        assert_eq!((p.variant, p.threads, p.packs), (NormVariant::Block, 256, 4));
        assert_eq!(choose(NormOp::SoftmaxBackward, 64, 512, DType::F32).variant, NormVariant::Warp { packs: 4 });
        assert_eq!(choose(NormOp::SoftmaxBackward, 64, 1024, DType::F32).variant, NormVariant::Block);
        let p = choose(NormOp::RmsNormBackward, 64, 32768, DType::BF16);
        assert_eq!((p.variant, p.parts, p.threads, p.packs), (NormVariant::Cluster, 4, 512, 2));
        let warp8 =
            force(NormVariant::Warp { packs: 8 }, NormOp::RmsNormBackward, RowsProblem::dense(4, 8), DType::F32);
        assert!(matches!(warp8, Err(NormError::VariantMismatch { .. })));
    }

    #[test]
    fn every_plan_covers_its_row_and_fits_the_device() {
        let limits = planner(&ROOMY, Tuning::default()).limits;
        for op in NormOp::ALL {
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                for cols in [1, 7, 33, 1000, 4099, 70000, 262144, 1 << 20] {
                    for (variant, _) in NORM_VARIANTS {
                        let Ok(plan) = force(*variant, op, RowsProblem::dense(3, cols), dtype) else {
                            continue;
                        };
                        let what = format!("{op:?} {dtype} {cols} {plan:?}");
                        assert_eq!(plan.variant, *variant, "{what}");
                        let group = if plan.is_warp_layout() { plan.lanes() } else { plan.threads };
                        assert!(plan.parts * group * plan.packs * plan.width >= cols, "{what}");
                        let pack = 16 / dtype.size_bytes();
                        if !plan.is_warp_layout() {
                            let chunk_packs = CHUNK_ELEMS / pack;
                            assert!(plan.packs % chunk_packs == 0, "{what}");
                            assert!(op.is_forward() || plan.packs == chunk_packs, "{what}");
                            assert!(!op.is_forward() || plan.part_bytes() <= FORWARD_PART_BYTES, "{what}");
                            assert!(!op.is_forward() || plan.threads <= FORWARD_THREADS, "{what}");
                        }
                        assert!(plan.smem_bytes(op) <= limits.max_dynamic_smem, "{what}");
                        assert!((1..=MAX_STAGES).contains(&plan.stages), "{what}");
                        assert!(plan.threads % 32 == 0 && plan.threads <= MAX_THREADS, "{what}");
                        assert!((1..=MAX_SLOTS).contains(&plan.slots), "{what}");
                        if *variant == NormVariant::Cluster || *variant == NormVariant::Split {
                            assert!(plan.parts >= 2, "{what}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn depth_puts_the_most_rows_in_flight() {
        // 512 f32 on one CTA: 32 threads, 2 KiB parts; the model keeps 32 CTAs an SM at any
        // depth up to 4, so the deepest ring wins.
        let p = RowsProblem::dense(4096, 512);
        let plan = force(NormVariant::Block, NormOp::Softmax, p, DType::F32).unwrap();
        assert_eq!((plan.threads, plan.part_bytes(), plan.stages), (32, 2048, 4), "{plan:?}");
        // 16 KiB parts: 12 CTAs x 1 stage tie 6 x 2 (ties go to fewer stages) and beat 4 x 3 and 3 x 4.
        let plan = choose(NormOp::RmsNorm, 32768, 4096, DType::F32);
        assert_eq!((plan.part_bytes(), plan.stages), (16384, 1), "{plan:?}");
        // Shifted rows take the depth with the most CTAs per SM; element rows (backward
        // norms) stage synchronously. Unaligned 512 f32 (4 KiB parts): 32 CTAs at 1 stage
        // (the CTA limit), 22 at 2.
        let unaligned = |op| planner(&ROOMY, Tuning::default()).plan(NormVariant::Block, op, &p, DType::F32, false);
        let shifted = unaligned(NormOp::Softmax).unwrap();
        assert!(!shifted.vectorized && shifted.shifted(NormOp::Softmax) && shifted.stages == 1, "{shifted:?}");
        assert_eq!(unaligned(NormOp::LayerNormBackward).unwrap().stages, 1);
        // Unaligned bf16 rows of 4098 on 96 threads: 20 CTAs x 1 stage beat 11 x 2, 7 x 3 and
        // 5 x 4, though as many rows are in flight.
        let shifted = choose(NormOp::LayerNorm, 16377, 4098, DType::BF16);
        assert!(shifted.shifted(NormOp::LayerNorm), "{shifted:?}");
        assert_eq!((shifted.threads, shifted.part_bytes(), shifted.stages), (96, 9216, 1), "{shifted:?}");
        // The tuning caps the depth, or forces one.
        let capped = Tuning { max_stages: 2, ..Tuning::default() };
        let plan = planner(&ROOMY, capped).plan(NormVariant::Block, NormOp::Softmax, &p, DType::F32, true).unwrap();
        assert_eq!(plan.stages, 2);
        let forced = Tuning { stages: Some(3), ..Tuning::default() };
        let plan = planner(&ROOMY, forced).plan(NormVariant::Block, NormOp::Softmax, &p, DType::F32, true).unwrap();
        assert_eq!(plan.stages, 3);
    }

    #[test]
    fn slots_are_the_resident_ones() {
        // 16 KiB f32 parts: the model keeps 12 CTAs an SM (thread limit 16, shared memory 12).
        let plan = choose(NormOp::RmsNorm, 32768, 4096, DType::F32);
        assert_eq!(plan.slots, 12 * H100_SMS);
        // Never more slots than rows, nor warp slots than 4-row CTAs.
        assert_eq!(choose(NormOp::RmsNorm, 100, 4096, DType::F32).slots, 100);
        assert_eq!(choose(NormOp::Softmax, 10, 100, DType::F32).slots, 3);
        // Splits wider than the GPU holds run in waves on one slot.
        let plan = choose(NormOp::SoftmaxBackward, 4, 1 << 30, DType::F16);
        assert_eq!((plan.variant, plan.parts, plan.slots), (NormVariant::Split, 1 << 17, 1), "{plan:?}");
        // Clusters: what the device holds at once.
        let plan = choose(NormOp::Softmax, 8192, 32768, DType::F32);
        let kernel = StagedKernel {
            op: NormOp::Softmax,
            dtype: DType::F32,
            vectorized: true,
            threads: plan.threads,
            smem_bytes: plan.smem_bytes(NormOp::Softmax),
        };
        assert_eq!(plan.slots, ROOMY.clusters(&kernel, plan.parts).unwrap());
    }

    #[test]
    fn clusters_no_gpc_holds_are_refused_and_the_heuristic_splits() {
        let none = Model { clusters: false };
        let planner = planner(&none, Tuning::default());
        let p = RowsProblem::dense(8192, 32768);
        match planner.plan(NormVariant::Cluster, NormOp::Softmax, &p, DType::F32, true) {
            Err(NormError::PlanRefused { reason: Refusal::ClusterNotResident, plan, .. }) => {
                assert_eq!((plan.variant, plan.parts), (NormVariant::Cluster, 4))
            }
            other => panic!("{other:?}"),
        }
        let plan = planner.choose(NormOp::Softmax, &p, DType::F32, true).unwrap();
        assert_eq!((plan.variant, plan.parts), (NormVariant::Split, 2));
    }

    #[test]
    fn rings_past_shared_memory_are_refused() {
        // 300 KiB parts: a 70000-element f32 row (273 KiB) fits one part, not one CTA's memory.
        let tuning = Tuning { part_bytes: 300 * 1024, ..Tuning::default() };
        let planner = planner(&ROOMY, tuning);
        let p = RowsProblem::dense(8, 70000);
        match planner.plan(NormVariant::Block, NormOp::LayerNorm, &p, DType::F32, true) {
            Err(NormError::PlanRefused { reason: Refusal::SharedMemory { needed, limit }, .. }) => {
                assert!(needed > limit && limit == 225 * 1024, "{needed} {limit}")
            }
            other => panic!("{other:?}"),
        }
        let plan = planner.choose(NormOp::LayerNorm, &p, DType::F32, true).unwrap();
        assert!(plan.variant != NormVariant::Block && plan.smem_bytes(NormOp::LayerNorm) <= 225 * 1024, "{plan:?}");
    }

    #[test]
    fn plans_describe_themselves() {
        let plan = choose(NormOp::LayerNorm, 512, 262144, DType::BF16);
        let slots = plan.slots;
        assert_eq!(
            plan.to_string(),
            format!("cluster x8, 256 thr, 64 KiB parts, 1 stage, 16-byte accesses, {slots} slots")
        );
        let plan = force(NormVariant::Warp { packs: 2 }, NormOp::Softmax, RowsProblem::new(10, 200, 203), DType::F32);
        assert_eq!(plan.unwrap().to_string(), "warp-x2, 128 thr (4 rows a CTA), element accesses, 3 slots");
        let plan = force(NormVariant::Block, NormOp::Softmax, RowsProblem::dense(4096, 512), DType::F32).unwrap();
        assert_eq!(
            plan.to_string(),
            format!("block, 32 thr, 2 KiB parts, 4 stages, 16-byte accesses, {} slots", plan.slots)
        );
    }

    #[test]
    fn tuning_reads_its_variables_and_ignores_bad_values() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            Tuning::from_lookup(move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
        };
        assert_eq!(env(&[]), Tuning::default());
        let set = env(&[
            ("CKB_NORM_PART_KIB", "32"),
            ("CKB_NORM_THREADS", "128"),
            ("CKB_NORM_THREAD_ELEMS", "48"),
            ("CKB_NORM_MAX_STAGES", "2"),
            ("CKB_NORM_STAGES", "3"),
        ]);
        let want =
            Tuning { part_bytes: 32 * 1024, threads: 128, thread_elems: Some(48), max_stages: 2, stages: Some(3) };
        assert_eq!(set, want);
        set.validate().unwrap();
        let bad = env(&[
            ("CKB_NORM_PART_KIB", "201"),
            ("CKB_NORM_THREADS", "512"),
            ("CKB_NORM_THREAD_ELEMS", "40"),
            ("CKB_NORM_MAX_STAGES", "0"),
            ("CKB_NORM_STAGES", "five"),
        ]);
        assert_eq!(bad, Tuning::default());
        for tuning in [
            Tuning { threads: 48, ..Tuning::default() },
            Tuning { thread_elems: Some(0), ..Tuning::default() },
            Tuning { stages: Some(5), ..Tuning::default() },
            Tuning { part_bytes: 0, ..Tuning::default() },
        ] {
            assert!(matches!(tuning.validate(), Err(NormError::BadTuning { .. })), "{tuning:?}");
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
