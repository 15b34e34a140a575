//! From a problem and a variant to one call of the variant's `extern "C"` launcher: the
//! kernel's view of the operands (direct or swapped), what each variant can take, and the
//! shape heuristic that picks one.

use std::ffi::c_void;

use ckb_common::baselines::Fp32Math;
use ckb_common::{check_launch, DType, Layout};

use crate::problem::{GemmError, GemmProblem};
use crate::variants::{universal_for, variants, InputType, Major, Schedule, Variant};

/// Mirrors `CkbGemmArgs` in `kernels/gemm/args.cuh`; keep the two in step.
/// The kernel computes `C(m,n) = alpha * sum_k A(m,k) * B(n,k) + beta * C(m,n)` with every
/// operand addressed through two element strides.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct KernelArgs {
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub a_stride_m: i64,
    pub a_stride_k: i64,
    pub b_stride_n: i64,
    pub b_stride_k: i64,
    pub c_stride_m: i64,
    pub c_stride_n: i64,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub out_dtype: i32,
    pub alpha: f32,
    pub beta: f32,
    pub partials: u64,
    pub partial_ld: i64,
    pub partial_slice: i64,
    pub splits: i32,
    pub split_k_tiles: i32,
    pub c_tma_store: i32,
    pub unused: i32,
}

const _: () = assert!(std::mem::size_of::<KernelArgs>() == 136);

/// Device addresses of the three buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addresses {
    pub a: u64,
    pub b: u64,
    pub c: u64,
}

/// How a problem is handed to a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// The kernel's A, B, C are the problem's.
    Direct,
    /// The kernel computes `C^T = B^T A^T`: its A is the problem's B, its M is n.
    Swapped,
}

impl std::fmt::Display for Orientation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Orientation::Direct => "direct",
            Orientation::Swapped => "swapped",
        })
    }
}

/// What runs a problem: the variant, how the problem is handed to it, and which operands are
/// staged first. Every launch returns its plan; it prints as `sm90_bf16_128x256_s4_rc,
/// swapped` or `sm90_bf16_128x256_s4_rc, direct, A and B staged`.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The kernel.
    pub variant: &'static Variant,
    /// The kernel's view of the problem.
    pub orientation: Orientation,
    /// Operands copied into 16-byte-aligned scratch before the kernel reads them.
    pub staging: Staging,
    /// K slices run as separate work units and summed in order into C (1: no split).
    pub split: SplitK,
    /// f32 inputs split into tf32 terms in scratch for a tf32 kernel; `None` otherwise.
    pub tf32: Option<Tf32Split>,
}

/// f32 on tensor cores: both operands are rewritten into scratch as K-major rows of tf32-exact
/// terms (`kernels/gemm/split_tf32.cuh`), and a tf32 kernel runs the product over the longer K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tf32Split {
    /// fp32 accuracy ([`Fp32Math::Ieee`]): x = hi + lo, and the three products
    /// a_hi b_hi + a_hi b_lo + a_lo b_hi (3xTF32), K' = 3 K.
    ThreeTerms,
    /// Inputs rounded to tf32, one product ([`Fp32Math::Tf32`], opt-in, as cuBLAS's TF32 mode).
    OneTerm,
}

impl Tf32Split {
    /// The split that meets `math`.
    pub fn for_math(math: Fp32Math) -> Tf32Split {
        match math {
            Fp32Math::Ieee => Tf32Split::ThreeTerms,
            Fp32Math::Tf32 => Tf32Split::OneTerm,
        }
    }

    /// Segments of K per operand row.
    pub fn terms(self) -> usize {
        match self {
            Tf32Split::ThreeTerms => 3,
            Tf32Split::OneTerm => 1,
        }
    }

    /// Which segments of (A's, B's) rows hold the remainder `lo` (bit s: segment s), the
    /// others `hi`: A = [hi | hi | lo] against B = [hi | lo | hi].
    fn lo_segments(self) -> (u32, u32) {
        match self {
            Tf32Split::ThreeTerms => (0b100, 0b010),
            Tf32Split::OneTerm => (0, 0),
        }
    }

    /// The K-major problem the tf32 kernel sees: `terms` segments of K, each padded to 4
    /// floats (16 bytes, for TMA) with zeros; `None` when that K would not fit 32 bits.
    fn view(self, problem: &GemmProblem) -> Option<GemmProblem> {
        let k = self.terms() * tf32_segment(problem.k);
        (k <= i32::MAX as usize).then_some(GemmProblem {
            k,
            a_layout: Layout::RowMajor,
            lda: k,
            b_layout: Layout::ColMajor,
            ldb: k,
            ..*problem
        })
    }
}

/// One segment of a split operand's row: K padded to 4 floats.
fn tf32_segment(k: usize) -> usize {
    k.next_multiple_of(4)
}

impl std::fmt::Display for Tf32Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tf32Split::ThreeTerms => "3xTF32",
            Tf32Split::OneTerm => "TF32",
        })
    }
}

/// Split-K: where the output tiles fill at most half the SMs (skinny and deep-K problems),
/// the K loop is cut into `splits` slices of `k_tiles` K-tiles (the last may be shorter),
/// each a work unit of its own; their fp32 products go to scratch and a second kernel sums
/// them in slice order into C, so results are the same bits on every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitK {
    /// K slices, each a work unit with its own partials; 1: no split, all of K per tile.
    pub splits: usize,
    /// K-tiles (the variant's `tile.k` elements of K each) per slice; the last slice may
    /// have fewer. 0 without a split.
    pub k_tiles: usize,
}

impl SplitK {
    /// No split: one slice, the kernel walks all of K per tile.
    pub const NONE: SplitK = SplitK { splits: 1, k_tiles: 0 };

    /// The split for `tiles` output tiles of `k_tiles` K-tiles on `sms` SMs: none while the
    /// tiles fill more than half the SMs; otherwise enough slices to bring the work units
    /// to about one wave, each at least 4 K-tiles deep (256 of K for 16-bit inputs), at most 16.
    pub fn for_shape(tiles: usize, k_tiles: usize, sms: usize) -> SplitK {
        if tiles * 2 > sms {
            return SplitK::NONE;
        }
        let wanted = (sms / tiles.max(1)).min(k_tiles / 4).clamp(1, 16);
        if wanted == 1 {
            return SplitK::NONE;
        }
        let per_slice = k_tiles.div_ceil(wanted);
        SplitK { splits: k_tiles.div_ceil(per_slice), k_tiles: per_slice }
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {}", self.variant, self.orientation)?;
        if self.split.splits > 1 {
            write!(f, ", split-K {}", self.split.splits)?;
        }
        if let Some(tf32) = self.tf32 {
            write!(f, ", {tf32} split")?;
        }
        match (self.staging.a, self.staging.b) {
            (true, true) => f.write_str(", A and B staged"),
            (true, false) => f.write_str(", A staged"),
            (false, true) => f.write_str(", B staged"),
            (false, false) => Ok(()),
        }
    }
}

/// Operands that TMA cannot describe where they are (a start or a line pitch that is not a
/// multiple of 16 bytes, as with K = 4095 in row-major A) and that are therefore copied into
/// scratch with aligned lines (`Gpu::with_workspace`) before the kernel runs. The copy reads
/// and writes each staged operand once; the universal kernel, the alternative, runs at about
/// a tenth of the TMA kernels' rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Staging {
    /// The problem's A is staged (A as given, not the kernel's A of a swapped view).
    pub a: bool,
    /// The problem's B is staged.
    pub b: bool,
}

impl Staging {
    /// Whether anything is staged.
    pub fn any(self) -> bool {
        self.a || self.b
    }
}

/// Below this many multiply-adds the universal kernel is kept: two staging launches would
/// cost more than they save.
const STAGING_MIN_MACS: u128 = 1 << 21;

/// One operand seen as lines along its contiguous dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lines {
    lines: usize,
    line_len: usize,
    pitch: usize,
}

impl Lines {
    /// A `rows x cols` matrix stored with `layout` and leading dimension `pitch`.
    fn of(layout: Layout, pitch: usize, rows: usize, cols: usize) -> Lines {
        match layout {
            Layout::RowMajor => Lines { lines: rows, line_len: cols, pitch },
            Layout::ColMajor => Lines { lines: cols, line_len: rows, pitch },
        }
    }

    /// Whether TMA can read the operand where it is: a 16-byte-aligned start, and lines
    /// 16 bytes apart, unless there is only one line, or the lines are single contiguous
    /// elements (both are one contiguous run, see [`fit_free_strides`]).
    fn tma_describes(self, address: u64, elem_bytes: usize) -> bool {
        let pitch_ok =
            self.lines == 1 || (self.line_len == 1 && self.pitch == 1) || (self.pitch * elem_bytes).is_multiple_of(16);
        address.is_multiple_of(16) && pitch_ok
    }

    /// The pitch of the staged copy: the line rounded up to 16 bytes of 16-bit elements.
    fn staged_pitch(self) -> usize {
        self.line_len.next_multiple_of(8)
    }

    /// Bytes of the staged copy, rounded up to 256 so that the next one starts aligned.
    fn staged_bytes(self, elem_bytes: usize) -> usize {
        (self.lines * self.staged_pitch() * elem_bytes).next_multiple_of(256)
    }
}

fn a_lines(p: &GemmProblem) -> Lines {
    Lines::of(p.a_layout, p.lda, p.m, p.k)
}

fn b_lines(p: &GemmProblem) -> Lines {
    Lines::of(p.b_layout, p.ldb, p.k, p.n)
}

/// The problem the kernel sees once `staging`'s operands are in scratch (their leading
/// dimensions become the staged pitch), and the addresses to plan with (scratch is
/// 256-byte aligned; the real ones are known at launch).
fn staged_view(problem: &GemmProblem, staging: Staging, addr: Addresses) -> (GemmProblem, Addresses) {
    let (mut p, mut a) = (*problem, addr);
    if staging.a {
        p.lda = a_lines(problem).staged_pitch();
        a.a = 0;
    }
    if staging.b {
        p.ldb = b_lines(problem).staged_pitch();
        a.b = 0;
    }
    (p, a)
}

/// The operands TMA cannot read in place, for 16-bit inputs; `None` when nothing needs it
/// or the inputs are f32 (which has no TMA kernel).
fn staging_needed(problem: &GemmProblem, input: DType, addr: Addresses) -> Option<Staging> {
    if input.size_bytes() != 2 {
        return None;
    }
    let staging =
        Staging { a: !a_lines(problem).tma_describes(addr.a, 2), b: !b_lines(problem).tma_describes(addr.b, 2) };
    staging.any().then_some(staging)
}

fn out_code(dtype: DType) -> Result<i32, DType> {
    match dtype {
        DType::F32 => Ok(0),
        DType::F16 => Ok(1),
        DType::BF16 => Ok(2),
        other => Err(other),
    }
}

/// (stride along rows, stride along columns) of a matrix stored with `layout` and `ld`.
fn strides(layout: Layout, ld: usize) -> (i64, i64) {
    match layout {
        Layout::RowMajor => (ld as i64, 1),
        Layout::ColMajor => (1, ld as i64),
    }
}

/// A pitch of `len` 16-bit elements rounded up to 16 bytes, for strides that are free.
fn aligned_pitch(len: i32) -> i64 {
    (len.max(1) as i64 + 7) / 8 * 8
}

/// An operand's (stride along M or N, stride along K) with the strides along extents of 1
/// set to what a kernel of majorness `major` wants. Such a stride is never stepped along, so
/// any value describes the same elements: an M = 1 column-major A with lda = 1 is one
/// contiguous row, K-major with any pitch, and TMA gets a 16-byte-multiple one.
fn fit_free_strides((mn_stride, k_stride): (i64, i64), (mn, k): (i32, i32), major: Major) -> (i64, i64) {
    let pitch = aligned_pitch;
    match major {
        Major::K => (if mn == 1 { pitch(k) } else { mn_stride }, if k == 1 { 1 } else { k_stride }),
        Major::MN => (if mn == 1 { 1 } else { mn_stride }, if k == 1 { pitch(mn) } else { k_stride }),
    }
}

/// The kernel's view of `problem`. Validation has already bounded every size.
/// For a TMA variant (`majors`), strides along extents of 1 are fitted to its majorness
/// ([`fit_free_strides`]), and a single row or column of C is described as row-major with
/// an aligned pitch, so that the epilogue stores vectors.
pub(crate) fn kernel_args(
    problem: &GemmProblem,
    orientation: Orientation,
    addr: Addresses,
    output: DType,
    majors: Option<(Major, Major)>,
) -> KernelArgs {
    let mut args = oriented_args(problem, orientation, addr, output);
    if let Some((a_major, b_major)) = majors {
        (args.a_stride_m, args.a_stride_k) =
            fit_free_strides((args.a_stride_m, args.a_stride_k), (args.m, args.k), a_major);
        (args.b_stride_n, args.b_stride_k) =
            fit_free_strides((args.b_stride_n, args.b_stride_k), (args.n, args.k), b_major);
    }
    // C's free stride (along an extent of 1) gets an aligned pitch where the other is unit.
    if args.m == 1 && args.c_stride_n == 1 {
        args.c_stride_m = aligned_pitch(args.n);
    } else if args.n == 1 && args.c_stride_m == 1 {
        args.c_stride_n = aligned_pitch(args.m);
    }
    args
}

/// The problem's own strides in the kernel's orientation.
fn oriented_args(problem: &GemmProblem, orientation: Orientation, addr: Addresses, output: DType) -> KernelArgs {
    let (a_m, a_k) = strides(problem.a_layout, problem.lda); // A(m,k)
    let (b_k, b_n) = strides(problem.b_layout, problem.ldb); // B(k,n)
    let (c_m, c_n) = strides(problem.c_layout, problem.ldc); // C(m,n)
    let out_dtype = out_code(output).expect("output dtype checked by the caller");
    let (m, n, k) = (problem.m as i32, problem.n as i32, problem.k as i32);
    let common = |a, b, c| KernelArgs {
        a,
        b,
        c,
        a_stride_m: 0,
        a_stride_k: 0,
        b_stride_n: 0,
        b_stride_k: 0,
        c_stride_m: 0,
        c_stride_n: 0,
        m,
        n,
        k,
        out_dtype,
        alpha: problem.alpha,
        beta: problem.beta,
        partials: 0,
        partial_ld: 0,
        partial_slice: 0,
        splits: 1,
        split_k_tiles: 0,
        c_tma_store: 0,
        unused: 0,
    };
    match orientation {
        Orientation::Direct => KernelArgs {
            a_stride_m: a_m,
            a_stride_k: a_k,
            b_stride_n: b_n,
            b_stride_k: b_k,
            c_stride_m: c_m,
            c_stride_n: c_n,
            ..common(addr.a, addr.b, addr.c)
        },
        Orientation::Swapped => KernelArgs {
            a_stride_m: b_n,
            a_stride_k: b_k,
            b_stride_n: a_m,
            b_stride_k: a_k,
            c_stride_m: c_n,
            c_stride_n: c_m,
            m: n,
            n: m,
            ..common(addr.b, addr.a, addr.c)
        },
    }
}

/// Why `variant` cannot run `args` (the kernel view), or `None` when it can. These are the
/// only can-implement rules: the C++ launchers trust them.
fn cannot_run(variant: &Variant, input: DType, output: DType, args: &KernelArgs) -> Option<String> {
    if variant.input() != input {
        return Some(format!("it takes {} inputs, not {input}", variant.input()));
    }
    if out_code(output).is_err() {
        return Some(format!("it cannot write {output}"));
    }
    let tile = variant.config.tile;
    let tiles = (args.m as u64).div_ceil(tile.m as u64) * (args.n as u64).div_ceil(tile.n as u64);
    if variant.config.schedule == Schedule::Universal && tiles > i32::MAX as u64 {
        return Some(format!("its grid of one CTA per tile cannot hold {tiles} tiles (at most 2^31 - 1)"));
    }
    let (a_major, b_major) = variant.config.majors?;
    let unit = |major: Major, mn_stride: i64, k_stride: i64| match major {
        Major::K => (k_stride == 1).then_some(mn_stride),
        Major::MN => (mn_stride == 1).then_some(k_stride),
    };
    let Some(lda) = unit(a_major, args.a_stride_m, args.a_stride_k) else {
        return Some(format!("its A is {a_major:?}-major"));
    };
    let Some(ldb) = unit(b_major, args.b_stride_n, args.b_stride_k) else {
        return Some(format!("its B is {b_major:?}-major"));
    };
    // Only A and B go through TMA; the epilogue writes any C (vectors where it can).
    let tma_ok = |ld: i64, bytes: usize| {
        ld > 0 && (ld as i128 * bytes as i128) % 16 == 0 && (ld as i128 * bytes as i128) < (1 << 40)
    };
    let in_bytes = input.size_bytes();
    if (args.a | args.b) & 15 != 0 {
        return Some("TMA needs 16-byte-aligned A and B".into());
    }
    if !tma_ok(lda, in_bytes) || !tma_ok(ldb, in_bytes) {
        return Some("TMA needs A and B leading dimensions that are multiples of 16 bytes".into());
    }
    None
}

/// How well a kernel tile covers an `m x n x k` problem on `sms` multiprocessors: the useful
/// fraction of the tile-waves it would run, times the tile's own speed.
///
/// Large tiles lose where each CTA gets fewer than two tiles (nothing hides the pipeline fill
/// or the epilogue), and, where the epilogue stores C itself (not through TMA, see
/// [`tma_store_fits`]), where K is short: those threads then store instead of multiplying.
/// Measured on the H100 with the first epilogue: 128x128 beat 128x256 at 2048^3 (0.83 vs 0.63
/// of cuBLAS) and at (4096, 4096, 256) (0.53 vs 0.43). With the TMA store on the H200,
/// 128x256 beat 128x128 at (6144, 6144, 128): 0.86 vs 0.80.
/// With split-K, each of the `splits` slices is a work unit: the SMs' occupancy counts units,
/// and the partials' round trip costs about 5%.
///
/// A skinny view (M or N at most 64) is memory-bound: the tensor cores idle on padding either
/// way, and what counts is how many SMs stream the long operand and how many of its bytes each
/// keeps in flight (stages x the tile's long side), up to 128 KiB ([`skinny_stream`]).
fn score(variant: &Variant, args: &KernelArgs, sms: usize, split: SplitK) -> f64 {
    let (m, n, k) = (args.m as usize, args.n as usize, args.k as usize);
    let (bm, bn) = (variant.config.tile.m, variant.config.tile.n);
    let tiles = m.div_ceil(bm) * n.div_ceil(bn);
    let units = tiles * split.splits;
    let waves = units.div_ceil(sms.max(1));
    let occupancy = units as f64 / (waves * sms) as f64;
    let split_cost = if split.splits > 1 { 0.95 } else { 1.0 };
    if m.min(n) <= SKINNY {
        return occupancy * skinny_stream(variant, m >= n) * split_cost;
    }
    let tile_fill = (m as f64 * n as f64) / (tiles * bm * bn) as f64;
    let stores_overlap = split.splits == 1 && tma_store_fits(variant, args);
    let exposed_epilogue = bm * bn >= 128 * 256 && (tiles < 2 * sms || (k < 1024 && !stores_overlap));
    let penalty = if exposed_epilogue { 0.8 } else { 1.0 } * split_cost;
    occupancy * tile_fill * variant.config.relative_speed * penalty
}

/// At most this many rows (or columns) of output make a GEMM memory-bound.
const SKINNY: usize = 64;

/// How well a variant streams the long operand of a skinny view (`long_m`: M is the long
/// side): the bytes of it one SM has in flight, stages x tile extent x K-tile, against the
/// 128 KiB that kept 1 x 4096 x 14336 at 0.78x cuBLAS with a 128x256 tile, where 96 KiB
/// (128x128, 6 stages) ran at 0.67x. Ties go to the tile with the shorter short side, which
/// wastes less of its math on padding: at 16 x 8192 x 8192, 64x128 in 2 slices ran at 0.81x,
/// 128x256 in 4 at 0.75x, both with 128 KiB in flight.
fn skinny_stream(variant: &Variant, long_m: bool) -> f64 {
    let c = &variant.config;
    let (long_side, short_side) = if long_m { (c.tile.m, c.tile.n) } else { (c.tile.n, c.tile.m) };
    let in_flight = c.stages * long_side * c.tile.k * c.input.bytes();
    (in_flight as f64 / (128 << 10) as f64).min(1.0) * (1.0 + 1e-3 * 64.0 / short_side as f64)
}

/// The split-K of a TMA variant on an `m x n x k` kernel view; none for the universal kernel
/// or where splitting is not allowed.
fn split_for(variant: &Variant, (m, n, k): (usize, usize, usize), sms: usize, allow: bool) -> SplitK {
    if !allow || !variant.uses_tma() {
        return SplitK::NONE;
    }
    let tile = variant.config.tile;
    SplitK::for_shape(m.div_ceil(tile.m) * n.div_ceil(tile.n), k.div_ceil(tile.k), sms)
}

/// How `variant` would run `problem` at these addresses: in place if it can, else with the
/// operands TMA cannot read staged. Fails with the in-place reasons.
pub(crate) fn plan_for(
    variant: &'static Variant,
    problem: &GemmProblem,
    input: DType,
    output: DType,
    addr: Addresses,
    sms: usize,
) -> Result<Plan, GemmError> {
    if variant.config.input == InputType::Tf32 {
        return tf32_plan(Some(variant), problem, input, output, addr, sms).ok_or_else(|| {
            GemmError::VariantCannotRun {
                variant: variant.name,
                reason: format!("it takes f32 inputs split into tf32 terms, not {input}, or K is too large to split"),
            }
        });
    }
    let in_place = plan_in_place(variant, problem, input, output, addr, sms, true);
    if in_place.is_ok() || !variant.uses_tma() {
        return in_place;
    }
    let Some(staging) = staging_needed(problem, input, addr) else { return in_place };
    let (staged, staged_addr) = staged_view(problem, staging, addr);
    match plan_in_place(variant, &staged, input, output, staged_addr, sms, true) {
        Ok(plan) => Ok(Plan { staging, ..plan }),
        Err(_) => in_place,
    }
}

/// How `variant` would run `problem` at these addresses as they are, preferring the
/// orientation whose tiles cover the output better.
fn plan_in_place(
    variant: &'static Variant,
    problem: &GemmProblem,
    input: DType,
    output: DType,
    addr: Addresses,
    sms: usize,
    allow_split: bool,
) -> Result<Plan, GemmError> {
    let mut best: Option<(f64, Orientation)> = None;
    let mut reasons = Vec::new();
    for orientation in [Orientation::Direct, Orientation::Swapped] {
        let args = kernel_args(problem, orientation, addr, output, variant.config.majors);
        match cannot_run(variant, input, output, &args) {
            Some(reason) => reasons.push(format!("{orientation:?}: {reason}")),
            None => {
                let view = (args.m as usize, args.n as usize, args.k as usize);
                let s = score(variant, &args, sms, split_for(variant, view, sms, allow_split));
                if best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, orientation));
                }
            }
        }
        if !variant.uses_tma() {
            break; // the universal kernel takes any strides as they are
        }
    }
    match best {
        Some((_, orientation)) => {
            let args = kernel_args(problem, orientation, addr, output, variant.config.majors);
            let split = split_for(variant, (args.m as usize, args.n as usize, args.k as usize), sms, allow_split);
            Ok(Plan { variant, orientation, staging: Staging::default(), split, tf32: None })
        }
        None => Err(GemmError::VariantCannotRun { variant: variant.name, reason: reasons.join("; ") }),
    }
}

/// What the heuristic's choice depends on: the shape, the storage, the fp32 math, the
/// types, whether A, B and C start 16-byte aligned, whether beta is 0 (both decide whether
/// the epilogue can store through TMA), and the SM count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PlanKey {
    dims: [usize; 6],
    layouts: [Layout; 3],
    fp32_math: Fp32Math,
    types: (DType, DType),
    aligned: [bool; 3],
    beta_zero: bool,
    sms: usize,
}

/// Plans the heuristic has made, so that a shape is planned once per process: walking every
/// variant takes 5-25 us on the host, more than a small GEMM runs on the GPU (333 x 777 x
/// 1111 took 28 us against cuBLAS's 19). Cleared when full, so a sweep of shapes cannot grow it.
static PLANS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<PlanKey, Plan>>> =
    std::sync::LazyLock::new(Default::default);
const PLAN_CACHE_ENTRIES: usize = 4096;

/// The shape heuristic ([`choose_uncached`]), planned once per shape and kept.
pub(crate) fn choose(
    problem: &GemmProblem,
    input: DType,
    output: DType,
    addr: Addresses,
    sms: usize,
) -> Result<Plan, GemmError> {
    if out_code(output).is_err() {
        return Err(GemmError::UnsupportedTypes { input, output });
    }
    let p = problem;
    let key = PlanKey {
        dims: [p.m, p.n, p.k, p.lda, p.ldb, p.ldc],
        layouts: [p.a_layout, p.b_layout, p.c_layout],
        fp32_math: p.fp32_math,
        types: (input, output),
        aligned: [addr.a, addr.b, addr.c].map(|x| x.is_multiple_of(16)),
        beta_zero: p.beta == 0.0,
        sms,
    };
    // A poisoned lock only means another thread panicked mid-insert; the map is still whole.
    if let Some(plan) = PLANS.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(*plan);
    }
    let plan = choose_uncached(problem, input, output, addr, sms)?;
    let mut plans = PLANS.lock().unwrap_or_else(|e| e.into_inner());
    if plans.len() >= PLAN_CACHE_ENTRIES {
        plans.clear();
    }
    plans.insert(key, plan);
    Ok(plan)
}

/// The shape heuristic: the best-covering TMA variant that can run the problem, else the
/// universal kernel for the input dtype.
fn choose_uncached(
    problem: &GemmProblem,
    input: DType,
    output: DType,
    addr: Addresses,
    sms: usize,
) -> Result<Plan, GemmError> {
    let macs = problem.m as u128 * problem.n as u128 * problem.k as u128;
    if input == DType::F32 {
        // f32 never runs on a tf32 kernel as it is: the tensor cores would truncate it.
        if let Some(plan) = tf32_plan(None, problem, input, output, addr, sms).filter(|_| macs >= STAGING_MIN_MACS) {
            return Ok(plan);
        }
    } else if let Some(plan) = best_tma_plan(problem, input, output, addr, sms) {
        return Ok(plan);
    }
    if let Some(staging) = staging_needed(problem, input, addr).filter(|_| macs >= STAGING_MIN_MACS) {
        let (staged, staged_addr) = staged_view(problem, staging, addr);
        if let Some(plan) = best_tma_plan(&staged, input, output, staged_addr, sms) {
            return Ok(Plan { staging, ..plan });
        }
    }
    let fallback = universal_for(input).ok_or(GemmError::UnsupportedTypes { input, output })?;
    plan_in_place(fallback, problem, input, output, addr, sms, false)
}

/// How `variant` (else the best tf32 kernel) runs the f32 `problem` split into tf32 terms
/// ([`Tf32Split::for_math`] of the problem's `fp32_math`); `None` for other inputs, or when
/// the split's K does not fit.
fn tf32_plan(
    variant: Option<&'static Variant>,
    problem: &GemmProblem,
    input: DType,
    output: DType,
    addr: Addresses,
    sms: usize,
) -> Option<Plan> {
    if input != DType::F32 {
        return None;
    }
    let split = Tf32Split::for_math(problem.fp32_math);
    let view = split.view(problem)?;
    // The terms sit in 256-byte-aligned scratch.
    let view_addr = Addresses { a: 0, b: 0, ..addr };
    let plan = match variant {
        Some(v) => plan_in_place(v, &view, input, output, view_addr, sms, true).ok()?,
        None => best_tma_plan(&view, input, output, view_addr, sms)?,
    };
    Some(Plan { tf32: Some(split), ..plan })
}

/// The best-covering TMA plan that runs `problem` in place, if any. Split-K is considered
/// only when no variant's tiles alone fill more than half the SMs: where one does, its
/// measured speed stands (at 128 x 8192 x 8192 the 64 x 128 tile ran at 0.96x cuBLAS).
fn best_tma_plan(problem: &GemmProblem, input: DType, output: DType, addr: Addresses, sms: usize) -> Option<Plan> {
    let best_with = |allow_split: bool| {
        let mut best: Option<(f64, Plan)> = None;
        for variant in variants().iter().filter(|v| v.uses_tma()) {
            if let Ok(plan) = plan_in_place(variant, problem, input, output, addr, sms, allow_split) {
                let args = kernel_args(problem, plan.orientation, addr, output, variant.config.majors);
                let s = score(variant, &args, sms, plan.split);
                if best.as_ref().is_none_or(|(b, _)| s > *b) {
                    best = Some((s, plan));
                }
            }
        }
        best
    };
    let unsplit = best_with(false)?;
    // A skinny problem is scored on how it streams its long operand, split or not: a 64-row
    // tile along the long side fills the SMs but streams badly (64 x 8192 x 8192 cr ran at
    // 0.39x cuBLAS on 64x256 swapped, 0.82x on 64x256 in 4 slices).
    if problem.m.min(problem.n) <= SKINNY {
        let split = best_with(true)?;
        return Some(if split.0 > unsplit.0 { split.1 } else { unsplit.1 });
    }
    let fills_half = variants().iter().filter(|v| v.uses_tma()).any(|v| {
        plan_in_place(v, problem, input, output, addr, sms, false).is_ok_and(|plan| {
            let args = kernel_args(problem, plan.orientation, addr, output, v.config.majors);
            let tile = v.config.tile;
            (args.m as usize).div_ceil(tile.m) * (args.n as usize).div_ceil(tile.n) * 2 > sms
        })
    });
    if fills_half {
        Some(unsplit.1)
    } else {
        best_with(true).map(|(_, plan)| plan)
    }
}

extern "C" {
    #[cfg_attr(not(test), allow(dead_code))]
    fn ckb_gemm_check_schedule(
        m: i32,
        n: i32,
        bm: i32,
        bn: i32,
        sms: i32,
        k_tiles: i32,
        splits: i32,
        split_k_tiles: i32,
    ) -> i32;
    fn ckb_gemm_split_tf32(
        src: u64,
        stride_r: i64,
        stride_k: i64,
        dst: u64,
        dst_pitch: i64,
        seg_pitch: i64,
        rows: i64,
        k_len: i64,
        terms: i32,
        lo_terms: u32,
        stream: *mut c_void,
    ) -> i32;
    fn ckb_gemm_stage_lines(
        src: u64,
        src_pitch: i64,
        dst: u64,
        dst_pitch: i64,
        lines: i64,
        line_len: i64,
        sms: i32,
        stream: *mut c_void,
    ) -> i32;
}

/// Enqueues the plan on `gpu`'s stream: the staging copies, if any, then the kernel (and,
/// with split-K, the reduction of its slices).
///
/// # Safety
/// The addresses must point to device buffers of the stream's context holding at least what
/// `problem` needs (checked by the callers in lib.rs), alive until the kernel has run.
pub(crate) unsafe fn launch(
    plan: Plan,
    problem: &GemmProblem,
    addr: Addresses,
    output: DType,
    gpu: &ckb_common::Gpu,
) -> Result<(), GemmError> {
    let majors = plan.variant.config.majors;
    if let Some(split) = plan.tf32 {
        // SAFETY: the caller's contract.
        return unsafe { launch_tf32(plan, split, problem, addr, output, gpu) };
    }
    let (staged, _) = staged_view(problem, plan.staging, addr);
    let (a, b) = (a_lines(problem), b_lines(problem));
    let a_bytes = if plan.staging.a { a.staged_bytes(2) } else { 0 };
    let b_bytes = if plan.staging.b { b.staged_bytes(2) } else { 0 };
    let (partial_ld, partial_slice) = partial_layout(&kernel_args(&staged, plan.orientation, addr, output, majors));
    let partial_bytes = partial_bytes(plan.split, partial_slice);
    if a_bytes + b_bytes + partial_bytes == 0 {
        let args = kernel_args(problem, plan.orientation, addr, output, majors);
        // SAFETY: the caller's contract.
        return unsafe { launch_args(plan, problem, &args, gpu.cu_stream()) };
    }
    gpu.with_workspace(a_bytes + b_bytes + partial_bytes, |scratch| {
        let base = ckb_common::device_address(scratch, &gpu.stream);
        let mut kernel_addr = addr;
        let b_dst = base + a_bytes as u64;
        for (staged_here, lines, src, dst, kernel_side) in [
            (plan.staging.a, a, addr.a, base, &mut kernel_addr.a),
            (plan.staging.b, b, addr.b, b_dst, &mut kernel_addr.b),
        ] {
            if !staged_here {
                continue;
            }
            // SAFETY: src holds the operand's lines (validated by the caller); dst is scratch
            // of at least lines x staged pitch elements, on the same stream.
            let code = unsafe {
                ckb_gemm_stage_lines(
                    src,
                    lines.pitch as i64,
                    dst,
                    lines.staged_pitch() as i64,
                    lines.lines as i64,
                    lines.line_len as i64,
                    gpu.sm_count() as i32,
                    gpu.cu_stream(),
                )
            };
            check_launch("ckb_gemm_stage_lines", code)?;
            *kernel_side = dst;
        }
        let partials = base + (a_bytes + b_bytes) as u64;
        let args = with_split(
            kernel_args(&staged, plan.orientation, kernel_addr, output, majors),
            plan.split,
            partials,
            (partial_ld, partial_slice),
        );
        // SAFETY: the staged operands now sit in scratch with the staged view's pitches, the
        // partials after them (256-byte aligned, splits x slice floats); the rest as the
        // caller passed them.
        unsafe { launch_args(plan, &staged, &args, gpu.cu_stream()) }
    })?
}

/// Scratch bytes of split-K's partials (none without a split), rounded up to 256.
fn partial_bytes(split: SplitK, partial_slice: i64) -> usize {
    if split.splits > 1 {
        (split.splits * partial_slice as usize * 4).next_multiple_of(256)
    } else {
        0
    }
}

/// [`launch`] for f32 inputs on a tf32 kernel: A's and B's terms into scratch (then the
/// partials of split-K), then the kernel on the split view.
///
/// # Safety
/// As [`launch`].
unsafe fn launch_tf32(
    plan: Plan,
    split: Tf32Split,
    problem: &GemmProblem,
    addr: Addresses,
    output: DType,
    gpu: &ckb_common::Gpu,
) -> Result<(), GemmError> {
    let view = split.view(problem).expect("planned on this view");
    let majors = plan.variant.config.majors;
    let row_bytes = view.k * 4;
    let a_bytes = (problem.m * row_bytes).next_multiple_of(256);
    let b_bytes = (problem.n * row_bytes).next_multiple_of(256);
    let (partial_ld, partial_slice) = partial_layout(&kernel_args(&view, plan.orientation, addr, output, majors));
    let partials = partial_bytes(plan.split, partial_slice);
    let (a_lo, b_lo) = split.lo_segments();
    gpu.with_workspace(a_bytes + b_bytes + partials, |scratch| {
        let base = ckb_common::device_address(scratch, &gpu.stream);
        let (a_m, a_k) = strides(problem.a_layout, problem.lda); // A(m,k)
        let (b_k, b_n) = strides(problem.b_layout, problem.ldb); // B(k,n)
        for (src, (stride_r, stride_k), rows, dst, lo) in
            [(addr.a, (a_m, a_k), problem.m, base, a_lo), (addr.b, (b_n, b_k), problem.n, base + a_bytes as u64, b_lo)]
        {
            // SAFETY: src holds the operand (validated by the caller); dst is scratch of rows x
            // view.k floats, on the same stream.
            let code = unsafe {
                ckb_gemm_split_tf32(
                    src,
                    stride_r,
                    stride_k,
                    dst,
                    view.k as i64,
                    tf32_segment(problem.k) as i64,
                    rows as i64,
                    problem.k as i64,
                    split.terms() as i32,
                    lo,
                    gpu.cu_stream(),
                )
            };
            check_launch("ckb_gemm_split_tf32", code)?;
        }
        let kernel_addr = Addresses { a: base, b: base + a_bytes as u64, c: addr.c };
        let args = with_split(
            kernel_args(&view, plan.orientation, kernel_addr, output, majors),
            plan.split,
            base + (a_bytes + b_bytes) as u64,
            (partial_ld, partial_slice),
        );
        // SAFETY: the terms sit in scratch as the view describes them, the partials after
        // them; C is the caller's.
        unsafe { launch_args(plan, &view, &args, gpu.cu_stream()) }
    })?
}

/// `args` with the plan's split-K: its slices and where their partials go. Without a split,
/// `splits` stays 1 and the rest 0 (the scheduler then walks all of K per tile).
fn with_split(mut args: KernelArgs, split: SplitK, partials: u64, (ld, slice): (i64, i64)) -> KernelArgs {
    if split.splits > 1 {
        args.partials = partials;
        args.partial_ld = ld;
        args.partial_slice = slice;
        args.splits = split.splits as i32;
        args.split_k_tiles = split.k_tiles as i32;
    }
    args
}

/// Where split-K slices go in the kernel view: (leading dimension, slice stride) in floats,
/// in C's orientation, lines padded to 4 floats so that the epilogue stores vectors.
fn partial_layout(args: &KernelArgs) -> (i64, i64) {
    let row_major = args.c_stride_n == 1;
    let (lines, line_len) = if row_major { (args.m, args.n) } else { (args.n, args.m) };
    let ld = (line_len as i64 + 3) / 4 * 4;
    (ld, lines as i64 * ld)
}

/// Whether the epilogue hands C to TMA (`c_tma_store` in args.cuh): a TMA kernel writing a
/// row-major C (in its view) whose start, pitch and rows are whole 16-byte granules, with
/// beta == 0 (TMA only writes) and no split (slices go to the partials). Elsewhere the
/// epilogue's own vector stores take any C. Rows: a TMA store clips at C's edge in 16-byte
/// granules, so a row of 33 bf16 would have 14 bytes of the padding after it overwritten
/// (seen on the H200), past the buffer on the last row.
fn tma_store_fits(variant: &Variant, args: &KernelArgs) -> bool {
    let elem_bytes = if args.out_dtype == 0 { 4 } else { 2 };
    variant.uses_tma()
        && args.splits == 1
        && args.beta == 0.0
        && args.c_stride_n == 1
        && args.c.is_multiple_of(16)
        && (args.c_stride_m * elem_bytes) % 16 == 0
        && args.c_stride_m * elem_bytes < 1 << 40
        && (args.n as i64 * elem_bytes) % 16 == 0
}

/// Enqueues the plan's kernel on `stream` with `args` (the kernel view of `problem`).
///
/// # Safety
/// As [`launch`], for the addresses in `args`.
unsafe fn launch_args(
    plan: Plan,
    problem: &GemmProblem,
    args: &KernelArgs,
    stream: *mut c_void,
) -> Result<(), GemmError> {
    tracing::debug!(
        %plan,
        path = if plan.variant.uses_tma() { "tma" } else { "fallback" },
        m = problem.m, n = problem.n, k = problem.k,
        layouts = %problem.layout_letters(),
        "gemm launch"
    );
    let args = KernelArgs { c_tma_store: tma_store_fits(plan.variant, args).into(), ..*args };
    // SAFETY: `args` lives across the call; the launcher reads it and enqueues on `stream`.
    let code = unsafe { (plan.variant.launcher)(&args, stream) };
    check_launch(plan.variant.name, code)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIGNED: Addresses = Addresses { a: 1 << 20, b: 2 << 20, c: 3 << 20 };

    #[test]
    fn tma_store_only_where_tma_can_write_c() {
        let rc = crate::variants::find_variant("sm90_bf16_128x256_s4_rc").unwrap();
        let universal = universal_for(DType::BF16).unwrap();
        let p = GemmProblem::row_col(300, 200, 64);
        let args = |p: &GemmProblem, addr: Addresses, out: DType| {
            kernel_args(p, Orientation::Direct, addr, out, rc.config.majors)
        };
        assert!(tma_store_fits(rc, &args(&p, ALIGNED, DType::BF16)));
        assert!(!tma_store_fits(universal, &args(&p, ALIGNED, DType::BF16)), "the universal kernel has no tensor map");
        let col_major_c = GemmProblem::new(300, 200, 64, Layout::RowMajor, Layout::ColMajor, Layout::ColMajor);
        assert!(!tma_store_fits(rc, &args(&col_major_c, ALIGNED, DType::BF16)));
        assert!(!tma_store_fits(rc, &args(&p.with_scalars(1.0, 1.0), ALIGNED, DType::BF16)), "TMA does not read C");
        let off = Addresses { c: ALIGNED.c + 8, ..ALIGNED };
        assert!(!tma_store_fits(rc, &args(&p, off, DType::BF16)), "C 8 bytes off 16");
        let odd_pitch = p.with_leading_dims(p.lda, p.ldb, 204);
        assert!(!tma_store_fits(rc, &args(&odd_pitch, ALIGNED, DType::BF16)), "a pitch of 408 bytes");
        assert!(tma_store_fits(rc, &args(&odd_pitch, ALIGNED, DType::F32)), "a pitch of 816 bytes");
        let ragged_rows = GemmProblem::row_col(300, 33, 64).with_leading_dims(64, 64, 40);
        assert!(!tma_store_fits(rc, &args(&ragged_rows, ALIGNED, DType::BF16)), "rows of 66 bytes");
        let split = with_split(args(&p, ALIGNED, DType::BF16), SplitK { splits: 2, k_tiles: 1 }, 1 << 30, (200, 60000));
        assert!(!tma_store_fits(rc, &split), "split-K slices go to the partials");
    }

    #[test]
    fn swapped_view_transposes_everything() {
        let p = GemmProblem::new(3, 5, 7, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor);
        let d = kernel_args(&p, Orientation::Direct, ALIGNED, DType::F32, None);
        assert_eq!(
            (d.a_stride_m, d.a_stride_k, d.b_stride_n, d.b_stride_k, d.c_stride_m, d.c_stride_n),
            (7, 1, 1, 5, 5, 1)
        );
        let s = kernel_args(&p, Orientation::Swapped, ALIGNED, DType::F32, None);
        assert_eq!((s.m, s.n, s.a, s.b), (5, 3, ALIGNED.b, ALIGNED.a));
        assert_eq!(
            (s.a_stride_m, s.a_stride_k, s.b_stride_n, s.b_stride_k, s.c_stride_m, s.c_stride_n),
            (1, 5, 7, 1, 1, 5)
        );
    }

    #[test]
    fn aligned_gate_shapes_take_tma() {
        for (m, n, k) in
            [(2048, 2048, 2048), (8192, 8192, 8192), (128, 8192, 8192), (4000, 3000, 2048), (4096, 4096, 256)]
        {
            for layouts in [
                (Layout::RowMajor, Layout::ColMajor),
                (Layout::RowMajor, Layout::RowMajor),
                (Layout::ColMajor, Layout::ColMajor),
                (Layout::ColMajor, Layout::RowMajor),
            ] {
                let p = GemmProblem::new(m, n, k, layouts.0, layouts.1, Layout::RowMajor);
                let plan = choose(&p, DType::BF16, DType::BF16, ALIGNED, 132).unwrap();
                assert!(plan.variant.uses_tma(), "{m}x{n}x{k} {layouts:?}: {}", plan.variant.name);
            }
        }
    }

    #[test]
    fn tiles_follow_the_measured_shapes() {
        let tile = |m, n, k| {
            let plan = choose(&GemmProblem::row_col(m, n, k), DType::BF16, DType::BF16, ALIGNED, 132).unwrap();
            (plan.variant.config.tile.m, plan.variant.config.tile.n)
        };
        assert_eq!(tile(128, 8192, 8192), (64, 128));
        assert_eq!(tile(8192, 8192, 8192), (128, 256));
        assert_eq!(tile(4096, 4096, 4096), (128, 256));
        assert_eq!(tile(2048, 2048, 2048), (128, 128));
        // Short K with the TMA-store epilogue (H200): 128x256 0.86x cuBLAS, 128x128 0.80x.
        assert_eq!(tile(6144, 6144, 128), (128, 256));
        assert_eq!(tile(4096, 4096, 256), (128, 256));
        // Four even waves of 64x256 (swapped): 0.92x cuBLAS; 64x128's eight 0.80x, 128x128's
        // 4.1 0.80x.
        assert_eq!(tile(4096, 2112, 7168), (64, 256));
    }

    /// Skinny problems stream their long operand: the tile that keeps the most of it in
    /// flight, split until the SMs are busy. H200, bf16, against cuBLAS: 1 x 4096 x 14336 rr
    /// 0.83x on 64x256 in 8 slices (128x256: 0.78x); 8192 x 1 x 8192 cc 0.85x on 64x256
    /// swapped in 4 (128x256: 0.78x); 64 x 8192 x 8192 cr 0.82x on 64x256 in 4 (128x256:
    /// 0.77x, 64x256 swapped unsplit: 0.39x); 16 x 8192 x 8192 0.84x on 64x128 in 2 (64x256
    /// in 4: 0.80x); 1 x 14336 x 4096 0.87x on 64x128 unsplit (64x256 in 2: 0.81x).
    #[test]
    fn skinny_problems_take_the_deepest_stream() {
        let plan_of = |p: &GemmProblem| choose(p, DType::BF16, DType::BF16, ALIGNED, 132).unwrap();
        let (r, c) = (Layout::RowMajor, Layout::ColMajor);
        let plan = plan_of(&GemmProblem::new(1, 4096, 14336, r, r, r));
        assert_eq!((plan.variant.name, plan.split.splits), ("sm90_bf16_64x256_s5_rr", 8), "{plan}");
        let plan = plan_of(&GemmProblem::new(8192, 1, 8192, c, c, r));
        assert_eq!((plan.variant.name, plan.orientation), ("sm90_bf16_64x256_s5_rr", Orientation::Swapped), "{plan}");
        assert!(plan.split.splits >= 4, "{plan}");
        let plan = plan_of(&GemmProblem::new(64, 8192, 8192, c, r, r));
        assert_eq!((plan.variant.name, plan.orientation), ("sm90_bf16_64x256_s5_cr", Orientation::Direct), "{plan}");
        assert_eq!(plan.split.splits, 4, "{plan}");
        let plan = plan_of(&GemmProblem::row_col(16, 8192, 8192));
        assert_eq!((plan.variant.name, plan.split.splits), ("sm90_bf16_64x128_s8_rc", 2), "{plan}");
        let plan = plan_of(&GemmProblem::row_col(1, 14336, 4096));
        assert_eq!((plan.variant.name, plan.split.splits), ("sm90_bf16_64x128_s8_rc", 1), "{plan}");
    }

    #[test]
    fn misalignment_falls_back_to_the_universal_kernel() {
        let odd_k = GemmProblem::row_col(64, 64, 33);
        assert_eq!(choose(&odd_k, DType::BF16, DType::F32, ALIGNED, 132).unwrap().variant.name, "universal_bf16");
        let odd_address = Addresses { a: ALIGNED.a + 2, ..ALIGNED };
        let p = GemmProblem::row_col(64, 64, 64);
        assert_eq!(choose(&p, DType::F16, DType::F16, odd_address, 132).unwrap().variant.name, "universal_f16");
        assert_eq!(choose(&p, DType::F32, DType::F32, ALIGNED, 132).unwrap().variant.name, "universal_f32");
    }

    #[test]
    fn split_k_only_where_tiles_leave_sms_idle() {
        assert_eq!(SplitK::for_shape(32, 2048, 132), SplitK { splits: 4, k_tiles: 512 });
        assert_eq!(SplitK::for_shape(544, 64, 132), SplitK::NONE, "four waves of tiles");
        assert_eq!(SplitK::for_shape(8, 6, 132), SplitK::NONE, "too shallow to cut into 4-tile slices");
        for tiles in 1..140 {
            for k_tiles in 1..300 {
                let split = SplitK::for_shape(tiles, k_tiles, 132);
                assert!(split.splits <= 16);
                if split.splits > 1 {
                    // Every slice has at least one K-tile.
                    assert!((split.splits - 1) * split.k_tiles < k_tiles, "{tiles} {k_tiles}: {split:?}");
                    assert!(split.splits * split.k_tiles >= k_tiles);
                }
            }
        }
        let deep = GemmProblem::row_col(512, 512, 131072);
        let plan = choose(&deep, DType::BF16, DType::BF16, ALIGNED, 132).unwrap();
        assert!(plan.split.splits > 1, "{plan}");
        assert!(plan.to_string().contains("split-K"), "{plan}");
        let decode = GemmProblem::new(1, 4096, 14336, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor);
        assert!(choose(&decode, DType::BF16, DType::BF16, ALIGNED, 132).unwrap().split.splits > 1);
        let square = GemmProblem::row_col(4096, 4096, 4096);
        assert_eq!(choose(&square, DType::BF16, DType::BF16, ALIGNED, 132).unwrap().split, SplitK::NONE);
    }

    /// The C++ scheduler's walk for the kernel arguments our plans make, split or not: every
    /// tile once per slice, every slice non-empty, K covered (an empty slice hangs the GPU).
    #[test]
    fn every_plan_walks_each_tile_and_all_of_k() {
        let shapes = [
            (2048, 2048, 2048),
            (4096, 4096, 256),
            (512, 512, 131072),
            (1, 4096, 14336),
            (64, 8192, 8192),
            (128, 8192, 8192),
            (33, 1000, 3001),
            (1, 1, 1),
            (300, 257, 65),
        ];
        for (m, n, k) in shapes {
            for (a, b) in [
                (Layout::RowMajor, Layout::ColMajor),
                (Layout::RowMajor, Layout::RowMajor),
                (Layout::ColMajor, Layout::ColMajor),
            ] {
                for sms in [132, 114] {
                    let p = GemmProblem::new(m, n, k, a, b, Layout::RowMajor);
                    let plan = choose(&p, DType::BF16, DType::BF16, ALIGNED, sms).unwrap();
                    if !plan.variant.uses_tma() {
                        continue;
                    }
                    let (staged, _) = staged_view(&p, plan.staging, ALIGNED);
                    let args = kernel_args(&staged, plan.orientation, ALIGNED, DType::BF16, plan.variant.config.majors);
                    let args = with_split(args, plan.split, 1 << 30, partial_layout(&args));
                    let tile = plan.variant.config.tile;
                    let k_tiles = (args.k as usize).div_ceil(tile.k) as i32;
                    // SAFETY: host-only code; reads its arguments.
                    let fault = unsafe {
                        ckb_gemm_check_schedule(
                            args.m,
                            args.n,
                            tile.m as i32,
                            tile.n as i32,
                            sms as i32,
                            k_tiles,
                            args.splits,
                            args.split_k_tiles,
                        )
                    };
                    assert_eq!(fault, 0, "{m}x{n}x{k} {a:?}/{b:?} on {sms} SMs: {plan}");
                }
            }
        }
    }

    #[test]
    fn plans_are_kept_per_shape_and_alignment() {
        let p = GemmProblem::row_col(192, 320, 448);
        let first = choose(&p, DType::BF16, DType::BF16, ALIGNED, 132).unwrap();
        assert!(first.variant.uses_tma());
        // The same shape at an address TMA cannot read is planned anew, not served the TMA plan.
        let odd = Addresses { a: ALIGNED.a + 2, ..ALIGNED };
        let misaligned = choose(&p, DType::BF16, DType::BF16, odd, 132).unwrap();
        assert!(!misaligned.variant.uses_tma() || misaligned.staging.a, "{misaligned}");
        let again = choose(&p, DType::BF16, DType::BF16, ALIGNED, 132).unwrap();
        assert_eq!(
            (again.variant.name, again.orientation, again.split),
            (first.variant.name, first.orientation, first.split)
        );
        // Other types, other SM counts and other fp32 math are other keys.
        assert_eq!(choose(&p, DType::F32, DType::F32, ALIGNED, 132).unwrap().tf32, Some(Tf32Split::ThreeTerms));
        let tf32 = p.with_fp32_math(Fp32Math::Tf32);
        assert_eq!(choose(&tf32, DType::F32, DType::F32, ALIGNED, 132).unwrap().tf32, Some(Tf32Split::OneTerm));
        assert_eq!(choose(&tf32, DType::BF16, DType::BF16, ALIGNED, 132).unwrap().tf32, None);
    }

    #[test]
    fn f32_takes_the_tf32_kernels_split_into_terms_in_every_layout() {
        for a_layout in Layout::ALL {
            for b_layout in Layout::ALL {
                let p = GemmProblem::new(1000, 999, 1001, a_layout, b_layout, Layout::ColMajor);
                let plan = choose(&p, DType::F32, DType::BF16, ALIGNED, 132).unwrap();
                assert_eq!(plan.variant.config.input, InputType::Tf32, "{plan}");
                assert_eq!(plan.tf32, Some(Tf32Split::ThreeTerms), "{plan}");
                assert!(plan.to_string().ends_with("3xTF32 split"), "{plan}");
            }
        }
        // A tf32 kernel never takes f32 as it is, and small problems keep the FMA kernel.
        let tf32 = crate::variants::find_variant("sm90_tf32_128x128_s6_rc").unwrap();
        let plan = plan_for(tf32, &GemmProblem::row_col(64, 64, 64), DType::F32, DType::F32, ALIGNED, 132).unwrap();
        assert_eq!(plan.tf32, Some(Tf32Split::ThreeTerms));
        assert!(plan_for(tf32, &GemmProblem::row_col(64, 64, 64), DType::BF16, DType::F32, ALIGNED, 132).is_err());
        let small = choose(&GemmProblem::row_col(64, 64, 64), DType::F32, DType::F32, ALIGNED, 132).unwrap();
        assert_eq!((small.variant.name, small.tf32), ("universal_f32", None));
        // K' = 3 K must fit the kernels' 32-bit K.
        let deep = GemmProblem::row_col(1, 1, 1 << 30);
        assert_eq!(choose(&deep, DType::F32, DType::F32, ALIGNED, 132).unwrap().variant.name, "universal_f32");
    }

    #[test]
    fn an_output_type_no_kernel_writes_is_a_typed_error() {
        let p = GemmProblem::row_col(256, 256, 256);
        for output in [DType::I64, DType::F8E4M3] {
            match choose(&p, DType::BF16, output, ALIGNED, 132) {
                Err(GemmError::UnsupportedTypes { .. }) => {}
                other => panic!("{output}: {other:?}"),
            }
        }
    }

    #[test]
    fn any_c_takes_tma() {
        // Odd N: C's rows are not 16-byte aligned; the epilogue stores element by element.
        let odd_n = GemmProblem::row_col(256, 257, 64);
        assert!(choose(&odd_n, DType::BF16, DType::BF16, ALIGNED, 132).unwrap().variant.uses_tma());
        let odd_c = Addresses { c: ALIGNED.c + 2, ..ALIGNED };
        let p = GemmProblem::row_col(256, 256, 64).with_leading_dims(64, 64, 259);
        assert!(choose(&p, DType::BF16, DType::F16, odd_c, 132).unwrap().variant.uses_tma());
    }

    #[test]
    fn single_rows_and_columns_take_tma_in_any_layout() {
        // M = 1 with A column-major (lda = 1) is one contiguous row of K.
        for (m, n, layouts) in [
            (1, 4096, (Layout::ColMajor, Layout::ColMajor)),
            (1, 4096, (Layout::ColMajor, Layout::RowMajor)),
            (4096, 1, (Layout::RowMajor, Layout::RowMajor)),
            (4096, 1, (Layout::ColMajor, Layout::RowMajor)),
        ] {
            let p = GemmProblem::new(m, n, 4096, layouts.0, layouts.1, Layout::ColMajor);
            let plan = choose(&p, DType::BF16, DType::BF16, ALIGNED, 132).unwrap();
            assert!(plan.variant.uses_tma(), "{m}x{n} {layouts:?}: {plan}");
        }
        let single_row = GemmProblem::new(1, 8, 13, Layout::ColMajor, Layout::RowMajor, Layout::RowMajor);
        let k_major = Some((Major::K, Major::K));
        let d = kernel_args(&single_row, Orientation::Direct, ALIGNED, DType::F32, k_major);
        assert_eq!((d.a_stride_m, d.a_stride_k), (16, 1));
        // With lda = 4 the row's elements are 4 apart: not contiguous, so not K-major.
        let padded = single_row.with_leading_dims(4, 8, 8);
        let d = kernel_args(&padded, Orientation::Direct, ALIGNED, DType::F32, k_major);
        assert_eq!((d.a_stride_m, d.a_stride_k), (16, 4));
    }

    #[test]
    fn a_grid_past_2_31_ctas_is_refused_before_launch() {
        // The universal kernel's one-CTA-per-tile grid would need 2^50 CTAs here.
        let huge = GemmProblem::row_col(i32::MAX as usize, i32::MAX as usize, 1);
        huge.lens().unwrap();
        let universal = universal_for(DType::F32).unwrap();
        match plan_for(universal, &huge, DType::F32, DType::F32, ALIGNED, 132) {
            Err(GemmError::VariantCannotRun { variant: "universal_f32", reason }) => assert!(reason.contains("grid")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plans_print_variant_and_orientation() {
        let rr = crate::variants::find_variant("sm90_bf16_128x256_s4_rr").unwrap();
        let cc = GemmProblem::new(256, 512, 64, Layout::ColMajor, Layout::ColMajor, Layout::RowMajor);
        let plan = plan_for(rr, &cc, DType::BF16, DType::BF16, ALIGNED, 132).unwrap();
        assert_eq!(plan.to_string(), "sm90_bf16_128x256_s4_rr, swapped");
    }

    #[test]
    fn forcing_a_variant_checks_majorness_in_both_orientations() {
        let rc = crate::variants::find_variant("sm90_bf16_128x256_s4_rc").unwrap();
        let rc_problem = GemmProblem::row_col(256, 512, 64);
        assert_eq!(
            plan_for(rc, &rc_problem, DType::BF16, DType::BF16, ALIGNED, 132).unwrap().orientation,
            Orientation::Direct
        );
        // 512 x 256 output: the swapped view puts the 256-wide tile along the longer side... either way it runs.
        let cr = GemmProblem::new(256, 512, 64, Layout::ColMajor, Layout::RowMajor, Layout::RowMajor);
        assert!(plan_for(rc, &cr, DType::BF16, DType::BF16, ALIGNED, 132).is_err());
        let rr = crate::variants::find_variant("sm90_bf16_128x256_s4_rr").unwrap();
        // A column-major x B column-major is the rr kernel swapped.
        let cc = GemmProblem::new(256, 512, 64, Layout::ColMajor, Layout::ColMajor, Layout::RowMajor);
        assert_eq!(
            plan_for(rr, &cc, DType::BF16, DType::BF16, ALIGNED, 132).unwrap().orientation,
            Orientation::Swapped
        );
        assert!(plan_for(rr, &rc_problem, DType::F16, DType::BF16, ALIGNED, 132).is_err());
    }
}
