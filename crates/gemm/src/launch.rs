//! From a problem and a variant to one call of the variant's `extern "C"` launcher: the
//! kernel's view of the operands (direct or swapped), what each variant can take, and the
//! shape heuristic that picks one.

use std::ffi::c_void;

use ckb_common::{check_launch, DType, Layout};

use crate::problem::{GemmError, GemmProblem};
use crate::variants::{universal_for, variants, Major, Schedule, Variant};

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
}

const _: () = assert!(std::mem::size_of::<KernelArgs>() == 96);

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

/// What runs a problem: the variant and how the problem is handed to it. Every launch
/// returns its plan; it prints as `sm90_bf16_128x256_s4_kk, swapped`.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The kernel.
    pub variant: &'static Variant,
    /// The kernel's view of the problem.
    pub orientation: Orientation,
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {}", self.variant, self.orientation)
    }
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

/// The kernel's view of `problem`. Validation has already bounded every size.
pub(crate) fn kernel_args(
    problem: &GemmProblem,
    orientation: Orientation,
    addr: Addresses,
    output: DType,
) -> KernelArgs {
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
    let ldc = if args.c_stride_n == 1 { args.c_stride_m } else { args.c_stride_n };
    let tma_ok = |ld: i64, bytes: usize| {
        ld > 0 && (ld as i128 * bytes as i128) % 16 == 0 && (ld as i128 * bytes as i128) < (1 << 40)
    };
    let in_bytes = input.size_bytes();
    if (args.a | args.b | args.c) & 15 != 0 {
        return Some("TMA needs 16-byte-aligned base addresses".into());
    }
    if !tma_ok(lda, in_bytes) || !tma_ok(ldb, in_bytes) || !(ldc == 1 || tma_ok(ldc, output.size_bytes())) {
        return Some("TMA needs leading dimensions that are multiples of 16 bytes".into());
    }
    None
}

/// How well a kernel tile covers an `m x n x k` problem on `sms` multiprocessors: the useful
/// fraction of the tile-waves it would run, times the tile's own speed.
///
/// The cooperative epilogue is not overlapped with the math, so large tiles lose where K is
/// short or where each CTA gets fewer than two tiles (nothing hides the pipeline fill or the
/// epilogue). Measured on the H100 with the first epilogue: 128x128 beat 128x256 at 2048^3
/// (0.83 vs 0.63 of cuBLAS) and at (4096, 4096, 256) (0.53 vs 0.43); with the current one
/// the two are within 1% there, and the penalty only breaks the tie.
fn score(variant: &Variant, m: usize, n: usize, k: usize, sms: usize) -> f64 {
    let (bm, bn) = (variant.config.tile.m, variant.config.tile.n);
    let tiles = m.div_ceil(bm) * n.div_ceil(bn);
    let waves = tiles.div_ceil(sms.max(1));
    let covered = (waves * sms * bm * bn) as f64;
    let exposed_epilogue = bm * bn >= 128 * 256 && (k < 1024 || tiles < 2 * sms);
    let penalty = if exposed_epilogue { 0.8 } else { 1.0 };
    (m as f64 * n as f64) / covered * variant.config.relative_speed * penalty
}

/// How `variant` would run `problem` at these addresses, preferring the orientation whose
/// tiles cover the output better.
pub(crate) fn plan_for(
    variant: &'static Variant,
    problem: &GemmProblem,
    input: DType,
    output: DType,
    addr: Addresses,
    sms: usize,
) -> Result<Plan, GemmError> {
    let mut best: Option<(f64, Orientation)> = None;
    let mut reasons = Vec::new();
    for orientation in [Orientation::Direct, Orientation::Swapped] {
        let args = kernel_args(problem, orientation, addr, output);
        match cannot_run(variant, input, output, &args) {
            Some(reason) => reasons.push(format!("{orientation:?}: {reason}")),
            None => {
                let s = score(variant, args.m as usize, args.n as usize, args.k as usize, sms);
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
        Some((_, orientation)) => Ok(Plan { variant, orientation }),
        None => Err(GemmError::VariantCannotRun { variant: variant.name, reason: reasons.join("; ") }),
    }
}

/// The shape heuristic: the best-covering TMA variant that can run the problem, else the
/// universal kernel for the input dtype.
pub(crate) fn choose(
    problem: &GemmProblem,
    input: DType,
    output: DType,
    addr: Addresses,
    sms: usize,
) -> Result<Plan, GemmError> {
    let mut best: Option<(f64, Plan)> = None;
    for variant in variants().iter().filter(|v| v.uses_tma()) {
        if let Ok(plan) = plan_for(variant, problem, input, output, addr, sms) {
            let args = kernel_args(problem, plan.orientation, addr, output);
            let s = score(variant, args.m as usize, args.n as usize, args.k as usize, sms);
            if best.as_ref().is_none_or(|(b, _)| s > *b) {
                best = Some((s, plan));
            }
        }
    }
    if let Some((_, plan)) = best {
        return Ok(plan);
    }
    let fallback = universal_for(input).ok_or(GemmError::UnsupportedTypes { input, output })?;
    plan_for(fallback, problem, input, output, addr, sms)
}

/// Enqueues the plan's kernel on `stream`.
///
/// # Safety
/// The addresses must point to device buffers of the stream's context holding at least what
/// `problem` needs (checked by the callers in lib.rs), alive until the kernel has run.
pub(crate) unsafe fn launch(
    plan: Plan,
    problem: &GemmProblem,
    addr: Addresses,
    output: DType,
    stream: *mut c_void,
) -> Result<(), GemmError> {
    let args = kernel_args(problem, plan.orientation, addr, output);
    tracing::debug!(
        %plan,
        path = if plan.variant.uses_tma() { "tma" } else { "fallback" },
        m = problem.m, n = problem.n, k = problem.k,
        layouts = %problem.layout_letters(),
        "gemm launch"
    );
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
    fn swapped_view_transposes_everything() {
        let p = GemmProblem::new(3, 5, 7, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor);
        let d = kernel_args(&p, Orientation::Direct, ALIGNED, DType::F32);
        assert_eq!(
            (d.a_stride_m, d.a_stride_k, d.b_stride_n, d.b_stride_k, d.c_stride_m, d.c_stride_n),
            (7, 1, 1, 5, 5, 1)
        );
        let s = kernel_args(&p, Orientation::Swapped, ALIGNED, DType::F32);
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
        assert_eq!(tile(4096, 4096, 256), (128, 128));
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
    fn a_grid_past_2_31_ctas_is_refused_before_launch() {
        // k = 1 is no multiple of 16 bytes: only the universal kernel could take it, and its
        // one-CTA-per-tile grid would need 2^50 CTAs.
        let huge = GemmProblem::row_col(i32::MAX as usize, i32::MAX as usize, 1);
        huge.lens().unwrap();
        match choose(&huge, DType::BF16, DType::BF16, ALIGNED, 132) {
            Err(GemmError::VariantCannotRun { variant: "universal_bf16", reason }) => assert!(reason.contains("grid")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plans_print_variant_and_orientation() {
        let kn = crate::variants::find_variant("sm90_bf16_128x256_s4_kn").unwrap();
        let nk = GemmProblem::new(256, 512, 64, Layout::ColMajor, Layout::ColMajor, Layout::RowMajor);
        let plan = plan_for(kn, &nk, DType::BF16, DType::BF16, ALIGNED, 132).unwrap();
        assert_eq!(plan.to_string(), "sm90_bf16_128x256_s4_kn, swapped");
    }

    #[test]
    fn forcing_a_variant_checks_majorness_in_both_orientations() {
        let kk = crate::variants::find_variant("sm90_bf16_128x256_s4_kk").unwrap();
        let tn = GemmProblem::row_col(256, 512, 64);
        assert_eq!(plan_for(kk, &tn, DType::BF16, DType::BF16, ALIGNED, 132).unwrap().orientation, Orientation::Direct);
        // 512 x 256 output: the swapped view puts the 256-wide tile along the longer side... either way it runs.
        let nn = GemmProblem::new(256, 512, 64, Layout::ColMajor, Layout::RowMajor, Layout::RowMajor);
        assert!(plan_for(kk, &nn, DType::BF16, DType::BF16, ALIGNED, 132).is_err());
        let kn = crate::variants::find_variant("sm90_bf16_128x256_s4_kn").unwrap();
        // A column-major x B column-major is the kn kernel swapped.
        let nk = GemmProblem::new(256, 512, 64, Layout::ColMajor, Layout::ColMajor, Layout::RowMajor);
        assert_eq!(
            plan_for(kn, &nk, DType::BF16, DType::BF16, ALIGNED, 132).unwrap().orientation,
            Orientation::Swapped
        );
        assert!(plan_for(kn, &tn, DType::F16, DType::BF16, ALIGNED, 132).is_err());
    }
}
