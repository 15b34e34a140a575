//! Every row operation x element type x variant against the float64 references, on the GPU.
//!
//! Rows of 1, 7, 33, 1000, 4099, 70000 and 262144 elements, each dense, padded by 8
//! elements (16-byte accesses where the row allows) and padded by 3 (element accesses);
//! padding holds NaN, which no kernel may read. Softmax rows hold -inf entries and a row of
//! only -inf; layernorm a constant row (output exactly beta); rmsnorm a zero row. Outputs
//! and saved statistics start NaN-poisoned. Bounds: relative Frobenius error below 1e-5 for
//! f32 (1e-2 for f16/bf16) plus the element-wise bound of `Tolerance`. A variant that cannot
//! hold a row must refuse it with `NormError::VariantMismatch` (or, where the device cannot
//! run its plan, `NormError::PlanRefused`), and a forced variant that runs returns a plan
//! naming it; the heuristic never refuses. The plan a call returns equals
//! `Normalizer::plan`'s, and the inference forms write the training forms' bits.
//!
//! Run with `cargo test -p ckb-norm --test gpu -- --ignored` on a Hopper GPU.

use ckb_common::baselines::cudnn_softmax::CudnnSoftmax;
use ckb_common::{bf16, check_rows, compare, f16, random, to_f64_vec, DType, Element, Gpu, Tolerance};
use ckb_norm::{
    add_layernorm, add_layernorm_backward, add_layernorm_backward_with_variant, add_layernorm_with_variant,
    add_rmsnorm, add_rmsnorm_backward, add_rmsnorm_backward_with_variant, add_rmsnorm_with_variant, layernorm,
    layernorm_backward, layernorm_backward_with_variant, layernorm_inference, layernorm_with_variant, log_softmax,
    log_softmax_with_variant, rmsnorm, rmsnorm_backward, rmsnorm_backward_with_variant, rmsnorm_with_variant, softmax,
    softmax_backward, softmax_backward_with_variant, softmax_with_variant, NormElement, NormError, NormOp, NormPlan,
    NormResult, NormVariant, Normalizer, Refusal, RowsProblem, Tuning, NORM_VARIANTS,
};
use ckb_norm::{reference, verify};

// 1 to 8: a lane per row, its pack the row (vector accesses where the row allows).
const LENGTHS: [usize; 11] = [1, 2, 3, 4, 7, 8, 33, 1000, 4096 + 3, 70000, 262144];
const EPS: f32 = 1e-5;

fn gpu() -> Gpu {
    Gpu::new(0).expect("these tests need a Hopper GPU")
}

/// What one case did: ran and matched, or was refused by a variant that cannot hold it.
enum Outcome {
    Ran,
    Refused,
}

/// Err: what went wrong, for the failure list.
type CaseResult = Result<Outcome, String>;

/// One check: (gpu, variant or the heuristic, problem, seed, element offset of every buffer).
type Check = fn(&Gpu, Option<NormVariant>, &RowsProblem, u64, usize) -> CaseResult;

/// Calls `$op` (heuristic) or `$with_variant`.
macro_rules! run {
    ($gpu:expr, $variant:expr, $op:ident, $with_variant:ident, $problem:expr $(, $arg:expr)* $(,)?) => {
        match $variant {
            None => $op($gpu, $problem $(, $arg)*),
            Some(v) => $with_variant($gpu, v, $problem $(, $arg)*),
        }
    };
}

/// A refusal by a forced variant is an outcome; every other error fails the case, and so
/// does a forced variant's plan that names another variant.
fn ran(result: NormResult<Option<NormPlan>>, variant: Option<NormVariant>) -> Result<Option<Outcome>, String> {
    match result {
        Ok(Some(plan)) if variant.is_some_and(|v| v != plan.variant) => Err(format!("forced, but ran {plan}")),
        Ok(Some(_)) => Ok(None),
        Ok(None) => Err("nothing ran".into()),
        Err(NormError::VariantMismatch { .. } | NormError::PlanRefused { .. }) if variant.is_some() => {
            Ok(Some(Outcome::Refused))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn tolerance<T: Element>() -> Tolerance {
    if T::DTYPE == DType::F32 {
        Tolerance::F32
    } else {
        Tolerance::HALF
    }
}

/// Statistics are f32 whatever the element type, computed from the same rounded inputs.
const STATS: Tolerance = Tolerance::F32;
/// A row mean is taken relative to the row's first element (exact constant rows), so its
/// error is a rounding of that element's size, not of the mean's: bound it against the
/// data's scale (1) element by element; near-zero means of long rows make a relative
/// Frobenius bound meaningless.
const MEAN: Tolerance = Tolerance { rel_frobenius: 1e-3, elementwise: 1e-5, scale: 1.0 };

fn expect(what: &str, got: &[f64], want: &[f64], tol: Tolerance) -> Result<(), String> {
    let c = compare(got, want, tol);
    if c.passed {
        Ok(())
    } else {
        Err(format!(
            "{what}: rel err {:.3e}, worst element {:.3e}, max abs {:.3e}, {} NaN/inf mismatches",
            c.rel_err, c.max_elementwise, c.max_abs_err, c.nan_count
        ))
    }
}

/// Softmax rows, each on its own against the reference rounded to T: probabilities
/// relative to themselves with each row's sum checked ([`Tolerance::relative`]), log
/// probabilities at the output type's bounds.
fn expect_softmax_rows<T: Element>(log: bool, got: &[f64], want: &[f64], cols: usize) -> Result<(), String> {
    let rounded: Vec<f64> = want.iter().map(|&v| T::DTYPE.round(v)).collect();
    let (tol, sums) = if log {
        (Tolerance::for_output(T::DTYPE), None)
    } else {
        let tol = Tolerance::relative(T::DTYPE);
        (tol, Some(tol.elementwise))
    };
    let c = check_rows(got, &rounded, cols, tol, sums).map_err(|e| e.to_string())?;
    if c.summary.passed {
        Ok(())
    } else {
        Err(format!("y: {} rows failed, first {:?}: {c:?}", c.failed_rows, c.first_failed_row))
    }
}

/// A norm backward's dx: `tol` element by element (and no NaN), the Frobenius error as
/// [`verify::norm_dx_rel_err`] takes it (relative to the size of the terms dx cancels).
fn expect_norm_dx(
    got: &[f64],
    want: &[f64],
    p: &RowsProblem,
    (dy, gamma, rstd): (&[f64], &[f64], &[f64]),
    tol: Tolerance,
) -> Result<(), String> {
    expect("dx", got, want, Tolerance { rel_frobenius: f64::INFINITY, ..tol })?;
    let rel = verify::norm_dx_rel_err(got, want, p, dy, gamma, rstd);
    if rel <= tol.rel_frobenius {
        Ok(())
    } else {
        Err(format!("dx: rel err {rel:.3e} against max(||dx||, ||dy * gamma * rstd||)"))
    }
}

/// A row-shaped input of `offset + input_len` elements: random normal values passed
/// through `special(row, col, value)`, NaN in the padding between rows and in the offset.
fn rows_input<T: Element>(
    problem: &RowsProblem,
    offset: usize,
    seed: u64,
    special: impl Fn(usize, usize, f64) -> f64,
) -> Vec<T> {
    let normal: Vec<T> = random::normal(problem.input_len(), seed);
    let mut host = vec![T::from_f64(f64::NAN); offset + problem.input_len()];
    for i in 0..problem.rows {
        for j in 0..problem.cols {
            let at = i * problem.row_stride + j;
            host[offset + at] = T::from_f64(special(i, j, normal[at].to_f64()));
        }
    }
    host
}

/// `offset` NaNs, then `values`.
fn with_offset<T: Element>(values: Vec<T>, offset: usize) -> Vec<T> {
    let mut host = vec![T::from_f64(f64::NAN); offset];
    host.extend(values);
    host
}

/// The f64 values a reference sees: the buffer without its offset.
fn f64s<T: Element>(host: &[T], offset: usize) -> Vec<f64> {
    to_f64_vec(&host[offset..])
}

fn upload<T: Element>(gpu: &Gpu, host: &[T]) -> cudarc::driver::CudaSlice<T> {
    gpu.upload(host).expect("upload")
}

/// A NaN-poisoned buffer of offset + n elements.
fn poisoned<T: Element>(gpu: &Gpu, n: usize, offset: usize) -> cudarc::driver::CudaSlice<T> {
    gpu.poisoned::<T>(offset + n).expect("alloc")
}

fn download<T: Element>(gpu: &Gpu, buf: &cudarc::driver::CudaSlice<T>, offset: usize) -> Vec<f64> {
    let host = gpu.download(buf).expect("download");
    gpu.synchronize().expect("sync");
    to_f64_vec(&host[offset..])
}

// --- Forward ------------------------------------------------------------------------------

fn check_softmax<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
) -> CaseResult {
    check_softmax_like::<T>(gpu, false, variant, p, seed, off)
}

fn check_log_softmax<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
) -> CaseResult {
    check_softmax_like::<T>(gpu, true, variant, p, seed, off)
}

/// Row 0 has -inf at every third column, row 1 is all -inf (an all-NaN result).
fn check_softmax_like<T: NormElement>(
    gpu: &Gpu,
    log: bool,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
) -> CaseResult {
    let x_host: Vec<T> = rows_input(p, off, seed, |i, j, v| match (i, j % 3) {
        (0, 1) | (1, _) => f64::NEG_INFINITY,
        _ => 2.0 * v,
    });
    let x = upload(gpu, &x_host);
    let mut y = poisoned::<T>(gpu, p.output_len(), off);
    let (xv, mut yv) = (x.slice(off..), y.slice_mut(off..));
    let result = if log {
        run!(gpu, variant, log_softmax, log_softmax_with_variant, p, &xv, &mut yv)
    } else {
        run!(gpu, variant, softmax, softmax_with_variant, p, &xv, &mut yv)
    };
    if let Some(outcome) = ran(result, variant)? {
        return Ok(outcome);
    }
    let xs = f64s(&x_host, off);
    let want =
        if log { reference::log_softmax(&xs, p.reference_rows()) } else { reference::softmax(&xs, p.reference_rows()) };
    expect_softmax_rows::<T>(log, &download(gpu, &y, off), &want, p.cols)?;
    Ok(Outcome::Ran)
}

/// Row 1 is constant: its output must be exactly beta.
fn check_layernorm<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
) -> CaseResult {
    check_layernorm_of::<T>(gpu, variant, p, seed, off, |v| v)
}

/// [`check_layernorm`] on rows of `value(normal sample)` (row 1 still the constant 0.75).
fn check_layernorm_of<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
    value: impl Fn(f64) -> f64,
) -> CaseResult {
    let x_host: Vec<T> = rows_input(p, off, seed, |i, _, v| if i == 1 { 0.75 } else { value(v) });
    let gamma_host: Vec<T> = with_offset(random::normal(p.cols, seed + 1), off);
    let beta_host: Vec<T> = with_offset(random::normal(p.cols, seed + 2), off);
    let (x, gamma, beta) = (upload(gpu, &x_host), upload(gpu, &gamma_host), upload(gpu, &beta_host));
    let mut y = poisoned::<T>(gpu, p.output_len(), off);
    let mut mean = poisoned::<f32>(gpu, p.rows, 0);
    let mut rstd = poisoned::<f32>(gpu, p.rows, 0);
    let (xv, gv, bv, mut yv) = (x.slice(off..), gamma.slice(off..), beta.slice(off..), y.slice_mut(off..));
    let result =
        run!(gpu, variant, layernorm, layernorm_with_variant, p, &xv, &gv, &bv, EPS, &mut yv, &mut mean, &mut rstd);
    if let Some(outcome) = ran(result, variant)? {
        return Ok(outcome);
    }
    let beta64 = f64s(&beta_host, off);
    let want =
        reference::layernorm(&f64s(&x_host, off), p.reference_rows(), &f64s(&gamma_host, off), &beta64, EPS as f64);
    let got = download(gpu, &y, off);
    expect("y", &got, &want.y, tolerance::<T>())?;
    expect("mean", &download(gpu, &mean, 0), &want.mean, MEAN)?;
    expect("rstd", &download(gpu, &rstd, 0), &want.rstd, STATS)?;
    if p.rows > 1 && got[p.cols..2 * p.cols] != beta64[..] {
        return Err("the constant row is not exactly beta".into());
    }
    Ok(Outcome::Ran)
}

/// Row 1 is zero: its output must be exactly 0.
fn check_rmsnorm<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
) -> CaseResult {
    let x_host: Vec<T> = rows_input(p, off, seed, |i, _, v| if i == 1 { 0.0 } else { v });
    let gamma_host: Vec<T> = with_offset(random::normal(p.cols, seed + 1), off);
    let (x, gamma) = (upload(gpu, &x_host), upload(gpu, &gamma_host));
    let mut y = poisoned::<T>(gpu, p.output_len(), off);
    let mut rstd = poisoned::<f32>(gpu, p.rows, 0);
    let (xv, gv, mut yv) = (x.slice(off..), gamma.slice(off..), y.slice_mut(off..));
    let result = run!(gpu, variant, rmsnorm, rmsnorm_with_variant, p, &xv, &gv, EPS, &mut yv, &mut rstd);
    if let Some(outcome) = ran(result, variant)? {
        return Ok(outcome);
    }
    let want = reference::rmsnorm(&f64s(&x_host, off), p.reference_rows(), &f64s(&gamma_host, off), EPS as f64);
    let got = download(gpu, &y, off);
    expect("y", &got, &want.y, tolerance::<T>())?;
    expect("rstd", &download(gpu, &rstd, 0), &want.rstd, STATS)?;
    if p.rows > 1 && got[p.cols..2 * p.cols].iter().any(|&v| v != 0.0) {
        return Err("the zero row is not exactly 0".into());
    }
    Ok(Outcome::Ran)
}

/// A fused add's `h` (dense, at `h_off`) against x + residual rounded to T; returns the h
/// the norm saw, as the reference takes it (dense rows).
fn expect_sum<T: NormElement>(
    gpu: &Gpu,
    p: &RowsProblem,
    (x, residual): (&[f64], &[f64]),
    h: &cudarc::driver::CudaSlice<T>,
    h_off: usize,
) -> Result<Vec<f64>, String> {
    let want: Vec<f64> = (0..p.output_len())
        .map(|e| {
            let at = e / p.cols * p.row_stride + e % p.cols;
            T::DTYPE.round(x[at] + residual[at])
        })
        .collect();
    let got = download(gpu, h, h_off);
    expect("h", &got, &want, tolerance::<T>())?;
    Ok(got)
}

/// Odd seeds put h one element off y's alignment: h's stores then go element by element
/// while y's take 16-byte ones.
fn sum_offset(off: usize, seed: u64) -> usize {
    off + (seed % 2) as usize
}

fn check_add_layernorm<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
) -> CaseResult {
    let x_host: Vec<T> = rows_input(p, off, seed, |_, _, v| v);
    let r_host: Vec<T> = rows_input(p, off, seed + 3, |_, _, v| v);
    let gamma_host: Vec<T> = with_offset(random::normal(p.cols, seed + 1), off);
    let beta_host: Vec<T> = with_offset(random::normal(p.cols, seed + 2), off);
    let (x, r) = (upload(gpu, &x_host), upload(gpu, &r_host));
    let (gamma, beta) = (upload(gpu, &gamma_host), upload(gpu, &beta_host));
    let h_off = sum_offset(off, seed);
    let mut h = poisoned::<T>(gpu, p.output_len(), h_off);
    let mut y = poisoned::<T>(gpu, p.output_len(), off);
    let mut mean = poisoned::<f32>(gpu, p.rows, 0);
    let mut rstd = poisoned::<f32>(gpu, p.rows, 0);
    let (xv, rv, gv, bv) = (x.slice(off..), r.slice(off..), gamma.slice(off..), beta.slice(off..));
    let (mut hv, mut yv) = (h.slice_mut(h_off..), y.slice_mut(off..));
    let result = run!(
        gpu,
        variant,
        add_layernorm,
        add_layernorm_with_variant,
        p,
        &xv,
        &rv,
        &gv,
        &bv,
        EPS,
        &mut hv,
        &mut yv,
        &mut mean,
        &mut rstd
    );
    if let Some(outcome) = ran(result, variant)? {
        return Ok(outcome);
    }
    let sum = expect_sum(gpu, p, (&f64s(&x_host, off), &f64s(&r_host, off)), &h, h_off)?;
    let dense = RowsProblem::dense(p.rows, p.cols).reference_rows();
    let want = reference::layernorm(&sum, dense, &f64s(&gamma_host, off), &f64s(&beta_host, off), EPS as f64);
    expect("y", &download(gpu, &y, off), &want.y, tolerance::<T>())?;
    expect("mean", &download(gpu, &mean, 0), &want.mean, MEAN)?;
    expect("rstd", &download(gpu, &rstd, 0), &want.rstd, STATS)?;
    Ok(Outcome::Ran)
}

fn check_add_rmsnorm<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
) -> CaseResult {
    let x_host: Vec<T> = rows_input(p, off, seed, |_, _, v| v);
    let r_host: Vec<T> = rows_input(p, off, seed + 3, |_, _, v| v);
    let gamma_host: Vec<T> = with_offset(random::normal(p.cols, seed + 1), off);
    let (x, r, gamma) = (upload(gpu, &x_host), upload(gpu, &r_host), upload(gpu, &gamma_host));
    let h_off = sum_offset(off, seed);
    let mut h = poisoned::<T>(gpu, p.output_len(), h_off);
    let mut y = poisoned::<T>(gpu, p.output_len(), off);
    let mut rstd = poisoned::<f32>(gpu, p.rows, 0);
    let (xv, rv, gv) = (x.slice(off..), r.slice(off..), gamma.slice(off..));
    let (mut hv, mut yv) = (h.slice_mut(h_off..), y.slice_mut(off..));
    let result =
        run!(gpu, variant, add_rmsnorm, add_rmsnorm_with_variant, p, &xv, &rv, &gv, EPS, &mut hv, &mut yv, &mut rstd);
    if let Some(outcome) = ran(result, variant)? {
        return Ok(outcome);
    }
    let sum = expect_sum(gpu, p, (&f64s(&x_host, off), &f64s(&r_host, off)), &h, h_off)?;
    let dense = RowsProblem::dense(p.rows, p.cols).reference_rows();
    let want = reference::rmsnorm(&sum, dense, &f64s(&gamma_host, off), EPS as f64);
    expect("y", &download(gpu, &y, off), &want.y, tolerance::<T>())?;
    expect("rstd", &download(gpu, &rstd, 0), &want.rstd, STATS)?;
    Ok(Outcome::Ran)
}

// --- Backward -----------------------------------------------------------------------------

/// Behind a fused add: h's own gradient dh (strided like x), and the dx it adds up to.
fn with_addend(p: &RowsProblem, dx: &[f64], dh: &[f64]) -> Vec<f64> {
    dx.iter().enumerate().map(|(e, v)| v + dh[e / p.cols * p.row_stride + e % p.cols]).collect()
}

/// Column sums add `rows` terms: scale the element-wise bound by sqrt(rows).
fn column_tolerance<T: Element>(rows: usize) -> Tolerance {
    tolerance::<T>().with_scale((rows as f64).sqrt())
}

fn check_softmax_backward<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
) -> CaseResult {
    // y: a real softmax output, rounded to T, in the problem's strided layout.
    let logits: Vec<f64> = random::normal::<f32>(p.input_len(), seed).iter().map(|&v| v as f64).collect();
    let probabilities = reference::softmax(&logits, p.reference_rows());
    let y_host: Vec<T> = rows_input(p, off, seed, |i, j, _| probabilities[i * p.cols + j]);
    let dy_host: Vec<T> = rows_input(p, off, seed + 1, |_, _, v| v);
    let (y, dy) = (upload(gpu, &y_host), upload(gpu, &dy_host));
    let mut dx = poisoned::<T>(gpu, p.output_len(), off);
    let (yv, dyv, mut dxv) = (y.slice(off..), dy.slice(off..), dx.slice_mut(off..));
    let result = run!(gpu, variant, softmax_backward, softmax_backward_with_variant, p, &yv, &dyv, &mut dxv);
    if let Some(outcome) = ran(result, variant)? {
        return Ok(outcome);
    }
    let want = reference::softmax_backward(&f64s(&dy_host, off), &f64s(&y_host, off), p.reference_rows());
    expect("dx", &download(gpu, &dx, off), &want, tolerance::<T>())?;
    Ok(Outcome::Ran)
}

/// Saved statistics as the forward pass hands them over: f32.
fn as_f32_stats(values: &[f64]) -> (Vec<f32>, Vec<f64>) {
    let f: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let back = f.iter().map(|&v| v as f64).collect();
    (f, back)
}

fn check_layernorm_backward<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
) -> CaseResult {
    check_layernorm_backward_of::<T>(gpu, variant, p, seed, off, false)
}

fn check_add_layernorm_backward<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
) -> CaseResult {
    check_layernorm_backward_of::<T>(gpu, variant, p, seed, off, true)
}

/// LayerNorm backward, behind a fused add (`fused`: dx gains dh) or not.
fn check_layernorm_backward_of<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
    fused: bool,
) -> CaseResult {
    let x_host: Vec<T> = rows_input(p, off, seed, |_, _, v| v);
    let dh_host: Vec<T> = rows_input(p, off, seed + 3, |_, _, v| v);
    let dy_host: Vec<T> = rows_input(p, off, seed + 1, |_, _, v| v);
    let gamma_host: Vec<T> = with_offset(random::normal(p.cols, seed + 2), off);
    let (x64, dy64, gamma64) = (f64s(&x_host, off), f64s(&dy_host, off), f64s(&gamma_host, off));
    let forward = reference::layernorm(&x64, p.reference_rows(), &gamma64, &vec![0.0; p.cols], EPS as f64);
    let (mean32, mean64) = as_f32_stats(&forward.mean);
    let (rstd32, rstd64) = as_f32_stats(&forward.rstd);
    let (x, dy, gamma) = (upload(gpu, &x_host), upload(gpu, &dy_host), upload(gpu, &gamma_host));
    let (mean, rstd) = (upload(gpu, &mean32), upload(gpu, &rstd32));
    let mut dx = poisoned::<T>(gpu, p.output_len(), off);
    let mut dgamma = poisoned::<T>(gpu, p.cols, off);
    let mut dbeta = poisoned::<T>(gpu, p.cols, off);
    let dh = upload(gpu, &dh_host);
    let (xv, dyv, dhv, gv) = (x.slice(off..), dy.slice(off..), dh.slice(off..), gamma.slice(off..));
    let (mut dxv, mut dgv, mut dbv) = (dx.slice_mut(off..), dgamma.slice_mut(off..), dbeta.slice_mut(off..));
    let (m, r) = (&mean, &rstd);
    let result = if fused {
        let (dx, dg, db) = (&mut dxv, &mut dgv, &mut dbv);
        run!(
            gpu,
            variant,
            add_layernorm_backward,
            add_layernorm_backward_with_variant,
            p,
            &xv,
            &dyv,
            &dhv,
            &gv,
            m,
            r,
            dx,
            dg,
            db
        )
    } else {
        run!(
            gpu,
            variant,
            layernorm_backward,
            layernorm_backward_with_variant,
            p,
            &xv,
            &dyv,
            &gv,
            m,
            r,
            &mut dxv,
            &mut dgv,
            &mut dbv
        )
    };
    if let Some(outcome) = ran(result, variant)? {
        return Ok(outcome);
    }
    let mut want = reference::layernorm_backward(&dy64, &x64, p.reference_rows(), &gamma64, &mean64, &rstd64);
    if fused {
        want.dx = with_addend(p, &want.dx, &f64s(&dh_host, off));
    }
    expect_norm_dx(&download(gpu, &dx, off), &want.dx, p, (&dy64, &gamma64, &rstd64), tolerance::<T>())?;
    expect("dgamma", &download(gpu, &dgamma, off), &want.dgamma, column_tolerance::<T>(p.rows))?;
    expect("dbeta", &download(gpu, &dbeta, off), &want.dbeta, column_tolerance::<T>(p.rows))?;
    Ok(Outcome::Ran)
}

fn check_rmsnorm_backward<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
) -> CaseResult {
    check_rmsnorm_backward_of::<T>(gpu, variant, p, seed, off, false)
}

fn check_add_rmsnorm_backward<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
) -> CaseResult {
    check_rmsnorm_backward_of::<T>(gpu, variant, p, seed, off, true)
}

/// RMSNorm backward, behind a fused add (`fused`: dx gains dh) or not.
fn check_rmsnorm_backward_of<T: NormElement>(
    gpu: &Gpu,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    seed: u64,
    off: usize,
    fused: bool,
) -> CaseResult {
    let x_host: Vec<T> = rows_input(p, off, seed, |_, _, v| v);
    let dh_host: Vec<T> = rows_input(p, off, seed + 3, |_, _, v| v);
    let dy_host: Vec<T> = rows_input(p, off, seed + 1, |_, _, v| v);
    let gamma_host: Vec<T> = with_offset(random::normal(p.cols, seed + 2), off);
    let (x64, dy64, gamma64) = (f64s(&x_host, off), f64s(&dy_host, off), f64s(&gamma_host, off));
    let forward = reference::rmsnorm(&x64, p.reference_rows(), &gamma64, EPS as f64);
    let (rstd32, rstd64) = as_f32_stats(&forward.rstd);
    let (x, dy, gamma, rstd) =
        (upload(gpu, &x_host), upload(gpu, &dy_host), upload(gpu, &gamma_host), upload(gpu, &rstd32));
    let mut dx = poisoned::<T>(gpu, p.output_len(), off);
    let mut dgamma = poisoned::<T>(gpu, p.cols, off);
    let dh = upload(gpu, &dh_host);
    let (xv, dyv, dhv, gv) = (x.slice(off..), dy.slice(off..), dh.slice(off..), gamma.slice(off..));
    let (mut dxv, mut dgv) = (dx.slice_mut(off..), dgamma.slice_mut(off..));
    let result = if fused {
        run!(
            gpu,
            variant,
            add_rmsnorm_backward,
            add_rmsnorm_backward_with_variant,
            p,
            &xv,
            &dyv,
            &dhv,
            &gv,
            &rstd,
            &mut dxv,
            &mut dgv
        )
    } else {
        run!(
            gpu,
            variant,
            rmsnorm_backward,
            rmsnorm_backward_with_variant,
            p,
            &xv,
            &dyv,
            &gv,
            &rstd,
            &mut dxv,
            &mut dgv
        )
    };
    if let Some(outcome) = ran(result, variant)? {
        return Ok(outcome);
    }
    let mut want = reference::rmsnorm_backward(&dy64, &x64, p.reference_rows(), &gamma64, &rstd64);
    if fused {
        want.dx = with_addend(p, &want.dx, &f64s(&dh_host, off));
    }
    expect_norm_dx(&download(gpu, &dx, off), &want.dx, p, (&dy64, &gamma64, &rstd64), tolerance::<T>())?;
    expect("dgamma", &download(gpu, &dgamma, off), &want.dgamma, column_tolerance::<T>(p.rows))?;
    Ok(Outcome::Ran)
}

// --- Sweeps -------------------------------------------------------------------------------

/// The heuristic, then every variant.
fn variants() -> impl Iterator<Item = Option<NormVariant>> {
    std::iter::once(None).chain(NORM_VARIANTS.iter().map(|(v, _)| Some(*v)))
}

/// Dense, padded by 8 (16-byte rows where the length allows) and padded by 3.
fn layouts(rows: usize, cols: usize) -> [RowsProblem; 3] {
    [RowsProblem::dense(rows, cols), RowsProblem::new(rows, cols, cols + 8), RowsProblem::new(rows, cols, cols + 3)]
}

fn label(name: &str, dtype: DType, variant: Option<NormVariant>, p: &RowsProblem, off: usize) -> String {
    let variant = variant.map_or("heuristic", |v| v.name());
    format!("{name} {dtype} {variant} rows {} cols {} stride {} offset {off}", p.rows, p.cols, p.row_stride)
}

/// Runs `check` on `problems` x every variant; returns the failures.
fn sweep(name: &str, dtype: DType, check: Check, problems: &[RowsProblem], off: usize) -> Vec<String> {
    let gpu = gpu();
    let (mut failures, mut ran, mut refused) = (Vec::new(), 0, 0);
    for (n, problem) in problems.iter().enumerate() {
        for variant in variants() {
            if plan_refused(&gpu, name, dtype, variant, problem, off) {
                refused += 1;
                continue;
            }
            match check(&gpu, variant, problem, 1000 + n as u64, off) {
                Ok(Outcome::Ran) => ran += 1,
                Ok(Outcome::Refused) => refused += 1,
                Err(e) => failures.push(format!("{}: {e}", label(name, dtype, variant, problem, off))),
            }
        }
    }
    println!("{name} {dtype}: {ran} cases ran, {refused} refused by their variant, {} failed", failures.len());
    failures
}

/// Whether the forced `variant`'s plan for op `name` refuses `problem` (buffers `off`
/// elements into their allocations), so that the sweep need not build its inputs (most
/// variants hold no long rows). That a call refuses as its plan does is
/// `calls_return_the_plan_they_ran`'s to check.
fn plan_refused(
    gpu: &Gpu,
    name: &str,
    dtype: DType,
    variant: Option<NormVariant>,
    p: &RowsProblem,
    off: usize,
) -> bool {
    let Some(variant) = variant else { return false };
    // The fused backward forms run their norm's backward plan.
    let Some(op) = NormOp::ALL.into_iter().find(|op| op.name() == name).or_else(|| {
        NormOp::ALL.into_iter().find(|op| !op.is_forward() && op.name() == name.trim_start_matches("add_"))
    }) else {
        return false;
    };
    let mut normalizer = Normalizer::new(gpu).expect("device limits");
    normalizer.force_variant(Some(variant));
    let aligned = (off * dtype.size_bytes()).is_multiple_of(16);
    let plan = match dtype {
        DType::F32 => normalizer.plan::<f32>(op, p, aligned),
        DType::F16 => normalizer.plan::<f16>(op, p, aligned),
        DType::BF16 => normalizer.plan::<bf16>(op, p, aligned),
        _ => return false,
    };
    matches!(plan, Err(NormError::VariantMismatch { .. } | NormError::PlanRefused { .. }))
}

/// Every length in every layout, a few rows each.
fn length_sweep() -> Vec<RowsProblem> {
    LENGTHS.iter().flat_map(|&cols| layouts(if cols >= 70000 { 3 } else { 5 }, cols)).collect()
}

/// The three element types of one check, e.g. `checks!(check_softmax)`.
macro_rules! checks {
    ($check:ident) => {
        [
            (DType::F32, $check::<f32> as Check),
            (DType::F16, $check::<f16> as Check),
            (DType::BF16, $check::<bf16> as Check),
        ]
    };
}

fn assert_sweep(name: &str, checks: [(DType, Check); 3], problems: &[RowsProblem], off: usize) {
    let failures: Vec<String> =
        checks.iter().flat_map(|&(dtype, check)| sweep(name, dtype, check, problems, off)).collect();
    assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n"));
}

/// Every op, with its checks for the three element types.
fn all_ops() -> [(&'static str, [(DType, Check); 3]); 11] {
    [
        ("softmax", checks!(check_softmax)),
        ("log_softmax", checks!(check_log_softmax)),
        ("layernorm", checks!(check_layernorm)),
        ("rmsnorm", checks!(check_rmsnorm)),
        ("softmax_backward", checks!(check_softmax_backward)),
        ("layernorm_backward", checks!(check_layernorm_backward)),
        ("rmsnorm_backward", checks!(check_rmsnorm_backward)),
        ("add_layernorm", checks!(check_add_layernorm)),
        ("add_rmsnorm", checks!(check_add_rmsnorm)),
        ("add_layernorm_backward", checks!(check_add_layernorm_backward)),
        ("add_rmsnorm_backward", checks!(check_add_rmsnorm_backward)),
    ]
}

/// One test per op over every length and layout: `name => index into all_ops()`.
macro_rules! length_sweep_tests {
    ($($test:ident => $op:literal),* $(,)?) => {$(
        #[test]
        #[ignore = "needs a GPU"]
        fn $test() {
            let (name, checks) = all_ops()[$op];
            assert_sweep(name, checks, &length_sweep(), 0);
        }
    )*};
}

length_sweep_tests! {
    softmax_matches_reference => 0,
    log_softmax_matches_reference => 1,
    layernorm_matches_reference => 2,
    rmsnorm_matches_reference => 3,
    softmax_backward_matches_reference => 4,
    layernorm_backward_matches_reference => 5,
    rmsnorm_backward_matches_reference => 6,
    add_layernorm_matches_reference => 7,
    add_rmsnorm_matches_reference => 8,
    add_layernorm_backward_matches_reference => 9,
    add_rmsnorm_backward_matches_reference => 10,
}

/// LayerNorm's shifted statistics keep f32 rows with a large mean and a small spread
/// (1000 + 0.01 N(0, 1): a float64 two-pass variance of about 1e-4) and rows of three
/// elements with a tiny variance within the f32 output bounds, on every variant.
#[test]
#[ignore = "needs a GPU"]
fn layernorm_keeps_large_means_and_tiny_variances() {
    let gpu = gpu();
    let mut failures = Vec::new();
    type Rows = (&'static str, fn(f64) -> f64, &'static [usize]);
    let cases: [Rows; 2] = [
        ("1000 + 0.01 N", |v| 1000.0 + 0.01 * v, &[7, 1000, 4099, 70000]),
        ("1 + 1e-3 N", |v| 1.0 + 1e-3 * v, &[2, 3]),
    ];
    for (what, value, lengths) in cases {
        for &cols in lengths {
            for variant in variants() {
                let p = RowsProblem::dense(9, cols);
                if let Err(e) = check_layernorm_of::<f32>(&gpu, variant, &p, 41, 0, value) {
                    failures.push(format!("{what}: {}: {e}", label("layernorm", DType::F32, variant, &p, 0)));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Views one element past an allocation's start: no 16-byte accesses, whatever the shape.
#[test]
#[ignore = "needs a GPU"]
fn misaligned_views_take_the_element_path() {
    let problems = [RowsProblem::dense(5, 1024), RowsProblem::dense(5, 4096), RowsProblem::dense(3, 40000)];
    for (name, checks) in all_ops() {
        assert_sweep(name, checks, &problems, 1);
    }
}

/// Enough rows that every CTA of the persistent staged grid (and every warp slot of the
/// backward warp kernels) takes several: the staging ring turns over and column sums
/// add several rows per slot.
#[test]
#[ignore = "needs a GPU"]
fn many_rows_per_cta() {
    let problems = [
        RowsProblem::dense(20000, 256),
        RowsProblem::new(3000, 4096, 4096 + 8),
        RowsProblem::dense(600, 20000),
        RowsProblem::new(600, 20000 + 1, 20000 + 3),
    ];
    for (name, checks) in all_ops() {
        assert_sweep(name, checks, &problems, 0);
    }
}

/// Dense rows of 1 to 8 elements, enough for whole warps of lanes: their rows move through
/// shared-memory tiles (a partial last warp and padded rows do not), for every forward op.
#[test]
#[ignore = "needs a GPU"]
fn short_dense_rows_take_tiles() {
    let mut problems: Vec<RowsProblem> = (1..=8).map(|cols| RowsProblem::dense(2000 + 7 * cols, cols)).collect();
    problems.push(RowsProblem::new(2000, 7, 8));
    for (name, checks) in all_ops().into_iter().filter(|(name, _)| !name.ends_with("backward")) {
        assert_sweep(name, checks, &problems, 0);
    }
}

#[test]
#[ignore = "needs a GPU"]
fn single_rows_and_empty_problems() {
    let gpu = gpu();
    let mut failures = Vec::new();
    for cols in [1, 8, 1000, 70000] {
        let p = RowsProblem::dense(1, cols);
        for variant in variants() {
            for (name, dtype, check) in [
                ("softmax", DType::F32, check_softmax::<f32> as Check),
                ("layernorm", DType::BF16, check_layernorm::<bf16>),
                ("layernorm_backward", DType::F32, check_layernorm_backward::<f32>),
            ] {
                if let Err(e) = check(&gpu, variant, &p, 7, 0) {
                    failures.push(format!("{}: {e}", label(name, dtype, variant, &p, 0)));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // No rows: nothing runs. Empty rows: undefined statistics are NaN.
    let x = gpu.zeros::<f32>(8).unwrap();
    let mut y = gpu.poisoned::<f32>(8).unwrap();
    assert!(softmax(&gpu, &RowsProblem::dense(0, 8), &x, &mut y).unwrap().is_none());
    let mut mean = gpu.zeros::<f32>(4).unwrap();
    let mut rstd = gpu.zeros::<f32>(4).unwrap();
    let plan = layernorm(&gpu, &RowsProblem::dense(4, 0), &x, &x, &x, EPS, &mut y, &mut mean, &mut rstd).unwrap();
    assert!(plan.is_none());
    assert!(gpu.download(&mean).unwrap().iter().chain(&gpu.download(&rstd).unwrap()).all(|v| v.is_nan()));
    assert!(layernorm_inference(&gpu, &RowsProblem::dense(4, 0), &x, &x, &x, EPS, &mut y).unwrap().is_none());
    let normalizer = Normalizer::new(&gpu).unwrap();
    assert_eq!(normalizer.plan::<f32>(NormOp::Softmax, &RowsProblem::dense(0, 8), true).unwrap(), None);
    assert_eq!(normalizer.plan::<f32>(NormOp::LayerNorm, &RowsProblem::dense(4, 0), true).unwrap(), None);
}

#[test]
#[ignore = "needs a GPU"]
fn short_buffers_and_bad_eps_are_refused_before_launch() {
    let gpu = gpu();
    let p = RowsProblem::new(4, 100, 128);
    let x = gpu.zeros::<bf16>(p.input_len() - 1).unwrap();
    let mut y = gpu.zeros::<bf16>(p.output_len()).unwrap();
    match softmax(&gpu, &p, &x, &mut y) {
        Err(NormError::BufferTooShort { what: "x", needed, got, .. }) => assert_eq!(needed, got + 1),
        other => panic!("{other:?}"),
    }
    let x = gpu.zeros::<f32>(p.input_len()).unwrap();
    let gamma = gpu.zeros::<f32>(p.cols).unwrap();
    let mut y = gpu.zeros::<f32>(p.output_len()).unwrap();
    let mut rstd = gpu.zeros::<f32>(p.rows).unwrap();
    let err = rmsnorm(&gpu, &p, &x, &gamma, -1.0, &mut y, &mut rstd).unwrap_err();
    assert!(matches!(err, NormError::BadEps { .. }), "{err}");
    // Buffers that fit, a variant that does not: a warp with one pack a lane holds 128 floats.
    let wide = RowsProblem::dense(4, 4096);
    let x = gpu.zeros::<f32>(wide.input_len()).unwrap();
    let mut y = gpu.zeros::<f32>(wide.output_len()).unwrap();
    let err = softmax_with_variant(&gpu, NormVariant::Warp { packs: 1 }, &wide, &x, &mut y);
    assert!(matches!(err, Err(NormError::VariantMismatch { .. })), "{err:?}");
}

/// The same inputs give the same bits, column sums included.
#[test]
#[ignore = "needs a GPU"]
fn results_are_reproducible() {
    let gpu = gpu();
    let p = RowsProblem::dense(3000, 4096);
    let x = gpu.random_normal::<f32>(p.input_len(), 1).unwrap();
    let dy = gpu.random_normal::<f32>(p.input_len(), 2).unwrap();
    let gamma = gpu.random_normal::<f32>(p.cols, 3).unwrap();
    let beta = gpu.random_normal::<f32>(p.cols, 4).unwrap();
    let mut normalizer = Normalizer::new(&gpu).unwrap();
    let run = |normalizer: &mut Normalizer| {
        let mut y = gpu.zeros::<f32>(p.output_len()).unwrap();
        let (mut mean, mut rstd) = (gpu.zeros::<f32>(p.rows).unwrap(), gpu.zeros::<f32>(p.rows).unwrap());
        normalizer.layernorm(&p, &x, &gamma, &beta, EPS, &mut y, &mut mean, &mut rstd).unwrap();
        let mut dx = gpu.zeros::<f32>(p.output_len()).unwrap();
        let (mut dgamma, mut dbeta) = (gpu.zeros::<f32>(p.cols).unwrap(), gpu.zeros::<f32>(p.cols).unwrap());
        normalizer.layernorm_backward(&p, &x, &dy, &gamma, &mean, &rstd, &mut dx, &mut dgamma, &mut dbeta).unwrap();
        [y, dx, dgamma, dbeta].map(|b| gpu.download(&b).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<u32>>())
    };
    for variant in [None, Some(NormVariant::Cluster), Some(NormVariant::Split)] {
        normalizer.force_variant(variant);
        assert!(run(&mut normalizer) == run(&mut normalizer), "{variant:?} is not reproducible");
    }
}

/// cuDNN's softmax, the vendor baseline of the gate, agrees with the reference too.
#[test]
#[ignore = "needs a GPU"]
fn cudnn_softmax_baseline_matches_reference() {
    let gpu = gpu();
    fn check<T: Element>(gpu: &Gpu, p: &RowsProblem, log: bool) -> Result<(), String> {
        // On a GPU host a missing cuDNN is a failure: the gates' softmax column needs it.
        let softmax = CudnnSoftmax::<T>::new(gpu, p.rows, p.cols, p.row_stride, log).map_err(|e| e.to_string())?;
        let x_host: Vec<T> = rows_input(p, 0, 5, |_, _, v| 2.0 * v);
        let x = upload(gpu, &x_host);
        let mut y = poisoned::<T>(gpu, p.output_len(), 0);
        softmax.run(&x, &mut y).map_err(|e| e.to_string())?;
        let xs = to_f64_vec(&x_host);
        let want = if log {
            reference::log_softmax(&xs, p.reference_rows())
        } else {
            reference::softmax(&xs, p.reference_rows())
        };
        expect("y", &download(gpu, &y, 0), &want, tolerance::<T>())
    }
    let mut failures = Vec::new();
    for p in [RowsProblem::dense(5, 1000), RowsProblem::new(3, 4096, 4100), RowsProblem::dense(2, 70000)] {
        for log in [false, true] {
            for (dtype, result) in [
                (DType::F32, check::<f32>(&gpu, &p, log)),
                (DType::F16, check::<f16>(&gpu, &p, log)),
                (DType::BF16, check::<bf16>(&gpu, &p, log)),
            ] {
                if let Err(e) = result {
                    failures.push(format!("cuDNN {} {dtype} {p:?}: {e}", if log { "log_softmax" } else { "softmax" }));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// --- Plans ----------------------------------------------------------------------------------

/// Every call returns the plan `Normalizer::plan` gives for its buffers' alignment: a forced
/// variant's plan names it, or the call fails as the planner does; nothing else runs instead.
#[test]
#[ignore = "needs a GPU"]
fn calls_return_the_plan_they_ran() {
    let gpu = gpu();
    let mut failures = Vec::new();
    for (rows, cols) in [(300, 100), (300, 1024), (200, 4096), (64, 32768), (8, 262144), (2, 1 << 20)] {
        for (off, stride) in [(0, cols), (0, cols + 3), (1, cols)] {
            let p = RowsProblem::new(rows, cols, stride);
            let x = gpu.random_normal::<f32>(off + p.input_len(), 1).unwrap();
            let dy = gpu.random_normal::<f32>(off + p.input_len(), 2).unwrap();
            let gamma = gpu.random_normal::<f32>(off + cols, 3).unwrap();
            let beta = gpu.random_normal::<f32>(off + cols, 4).unwrap();
            let mut out = gpu.poisoned::<f32>(off + p.output_len()).unwrap();
            let (mut dgamma, mut dbeta) =
                (gpu.zeros::<f32>(off + cols).unwrap(), gpu.zeros::<f32>(off + cols).unwrap());
            let (mut mean, mut rstd) = (gpu.zeros::<f32>(rows).unwrap(), gpu.zeros::<f32>(rows).unwrap());
            let (xv, dyv, gv, bv) = (x.slice(off..), dy.slice(off..), gamma.slice(off..), beta.slice(off..));
            for variant in variants() {
                let mut n = Normalizer::new(&gpu).unwrap();
                n.force_variant(variant);
                for op in [NormOp::Softmax, NormOp::LayerNorm, NormOp::RmsNorm, NormOp::LayerNormBackward] {
                    let planned = n.plan::<f32>(op, &p, off == 0);
                    let (mut outv, mut dgv, mut dbv) =
                        (out.slice_mut(off..), dgamma.slice_mut(off..), dbeta.slice_mut(off..));
                    let result = match op {
                        NormOp::Softmax => n.softmax(&p, &xv, &mut outv),
                        NormOp::LayerNorm => n.layernorm(&p, &xv, &gv, &bv, EPS, &mut outv, &mut mean, &mut rstd),
                        NormOp::RmsNorm => n.rmsnorm(&p, &xv, &gv, EPS, &mut outv, &mut rstd),
                        _ => n.layernorm_backward(&p, &xv, &dyv, &gv, &mean, &rstd, &mut outv, &mut dgv, &mut dbv),
                    };
                    match (planned, result) {
                        (Ok(Some(want)), Ok(Some(got))) if want == got && variant.is_none_or(|v| v == got.variant) => {}
                        (Err(want), Err(got)) if variant.is_some() && want.to_string() == got.to_string() => {}
                        (want, got) => failures.push(format!(
                            "{}: planned {want:?}, ran {got:?}",
                            label(op.name(), DType::F32, variant, &p, off)
                        )),
                    }
                }
            }
        }
    }
    gpu.synchronize().unwrap();
    assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n"));
}

/// Plans the device cannot run are refused with typed errors and run nothing: a forced
/// block whose ring exceeds shared memory, and a forced cluster of 16 CTAs of 208 KiB that
/// either runs as that cluster or is refused as not resident (the heuristic then splits).
#[test]
#[ignore = "needs a GPU"]
fn refused_plans_are_typed_and_run_nothing() {
    let gpu = gpu();
    let softmax_of = |x: &cudarc::driver::CudaSlice<f32>, p: &RowsProblem| {
        reference::softmax(&to_f64_vec(&gpu.download(x).unwrap()), p.reference_rows())
    };
    let untouched = |y: &cudarc::driver::CudaSlice<f32>| download(&gpu, y, 0).iter().all(|v| v.is_nan());

    // 300 KiB parts: a 70000-element f32 row (273 KiB) is one part, staged in 288 KiB.
    let mut n = Normalizer::with_tuning(&gpu, Tuning { part_bytes: 300 * 1024, ..Tuning::default() }).unwrap();
    let p = RowsProblem::dense(3, 70000);
    let x = gpu.random_normal::<f32>(p.input_len(), 5).unwrap();
    let mut y = gpu.poisoned::<f32>(p.output_len()).unwrap();
    n.force_variant(Some(NormVariant::Block));
    match n.softmax(&p, &x, &mut y) {
        Err(NormError::PlanRefused { reason: Refusal::SharedMemory { needed, limit }, plan, .. }) => {
            assert!(needed > limit && plan.variant == NormVariant::Block, "{plan}: {needed} > {limit}")
        }
        other => panic!("a block of 288 KiB: {other:?}"),
    }
    assert!(untouched(&y), "a refused plan wrote y");
    n.force_variant(None);
    let plan = n.softmax(&p, &x, &mut y).unwrap().unwrap();
    assert_ne!(plan.variant, NormVariant::Block, "{plan}");
    expect("y", &download(&gpu, &y, 0), &softmax_of(&x, &p), Tolerance::F32).unwrap();

    // 200 KiB parts: 16 of them hold an 819200-element f32 row, one CTA an SM.
    let mut n = Normalizer::with_tuning(&gpu, Tuning { part_bytes: 200 * 1024, ..Tuning::default() }).unwrap();
    let p = RowsProblem::dense(2, 16 * 51200);
    let x = gpu.random_normal::<f32>(p.input_len(), 6).unwrap();
    let mut y = gpu.poisoned::<f32>(p.output_len()).unwrap();
    n.force_variant(Some(NormVariant::Cluster));
    match n.softmax(&p, &x, &mut y) {
        Ok(Some(plan)) => {
            assert_eq!((plan.variant, plan.parts), (NormVariant::Cluster, 16), "{plan}");
            expect("y", &download(&gpu, &y, 0), &softmax_of(&x, &p), Tolerance::F32).unwrap();
        }
        Err(NormError::PlanRefused { reason: Refusal::ClusterNotResident, plan, .. }) => {
            assert_eq!((plan.variant, plan.parts), (NormVariant::Cluster, 16), "{plan}");
            assert!(untouched(&y), "a refused plan wrote y");
            n.force_variant(None);
            let plan = n.softmax(&p, &x, &mut y).unwrap().unwrap();
            assert_eq!(plan.variant, NormVariant::Split, "{plan}");
            expect("y", &download(&gpu, &y, 0), &softmax_of(&x, &p), Tolerance::F32).unwrap();
        }
        other => panic!("a cluster of 16 x 208 KiB: {other:?}"),
    }
}

/// `layernorm_inference` and `rmsnorm_inference` run the training forms' plans and write
/// their `y` bit for bit, on every variant, aligned or not.
#[test]
#[ignore = "needs a GPU"]
fn inference_forms_write_the_training_forms_bits() {
    fn bits<T: Element>(gpu: &Gpu, buf: &cudarc::driver::CudaSlice<T>) -> Vec<u64> {
        download(gpu, buf, 0).iter().map(|v| v.to_bits()).collect()
    }
    fn check<T: NormElement>(
        gpu: &Gpu,
        variant: Option<NormVariant>,
        p: &RowsProblem,
        off: usize,
    ) -> Result<(), String> {
        let x = gpu.random_normal::<T>(off + p.input_len(), 11).unwrap();
        let gamma = gpu.random_normal::<T>(off + p.cols, 12).unwrap();
        let beta = gpu.random_normal::<T>(off + p.cols, 13).unwrap();
        let (xv, gv, bv) = (x.slice(off..), gamma.slice(off..), beta.slice(off..));
        let mut n = Normalizer::new(gpu).unwrap();
        n.force_variant(variant);
        for rms in [false, true] {
            let mut trained = gpu.poisoned::<T>(off + p.output_len()).unwrap();
            let mut inferred = gpu.poisoned::<T>(off + p.output_len()).unwrap();
            let (mut mean, mut rstd) = (gpu.poisoned::<f32>(p.rows).unwrap(), gpu.poisoned::<f32>(p.rows).unwrap());
            let (mut tv, mut iv) = (trained.slice_mut(off..), inferred.slice_mut(off..));
            let (train, infer) = if rms {
                (n.rmsnorm(p, &xv, &gv, EPS, &mut tv, &mut rstd), n.rmsnorm_inference(p, &xv, &gv, EPS, &mut iv))
            } else {
                (
                    n.layernorm(p, &xv, &gv, &bv, EPS, &mut tv, &mut mean, &mut rstd),
                    n.layernorm_inference(p, &xv, &gv, &bv, EPS, &mut iv),
                )
            };
            let op = if rms { "rmsnorm" } else { "layernorm" };
            match (train, infer) {
                (Ok(Some(a)), Ok(Some(b))) if a == b => {}
                (Err(a), Err(b)) if variant.is_some() && a.to_string() == b.to_string() => return Ok(()),
                (a, b) => return Err(format!("{op}: training ran {a:?}, inference {b:?}")),
            }
            if bits(gpu, &trained) != bits(gpu, &inferred) {
                return Err(format!("{op}: inference y differs from training y"));
            }
        }
        Ok(())
    }
    let gpu = gpu();
    let mut failures = Vec::new();
    let problems = [RowsProblem::dense(300, 1000), RowsProblem::new(64, 4096, 4099), RowsProblem::dense(8, 70000)];
    for p in problems.iter().chain(&[RowsProblem::dense(2, 262144)]) {
        for off in [0, 1] {
            for variant in variants() {
                for (dtype, result) in [
                    (DType::F32, check::<f32>(&gpu, variant, p, off)),
                    (DType::BF16, check::<bf16>(&gpu, variant, p, off)),
                ] {
                    if let Err(e) = result {
                        failures.push(format!("{}: {e}", label("norm inference", dtype, variant, p, off)));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n"));
}

/// `verify` on real outputs at a gate row length: softmax and log-softmax in bf16 and f16
/// (f16 probabilities reach its subnormals), layernorm in f32 and rmsnorm in bf16 pass the
/// row-wise checks; one row zeroed after the run fails them, and only that row.
#[test]
#[ignore = "needs a GPU"]
fn verify_passes_real_outputs_and_fails_a_zeroed_row() {
    use ckb_norm::verify::{check_layernorm, check_log_softmax, check_rmsnorm, check_softmax, NormCheck};
    fn zero_row<T: NormElement>(
        gpu: &Gpu,
        y: &cudarc::driver::CudaSlice<T>,
        row: usize,
        cols: usize,
    ) -> cudarc::driver::CudaSlice<T> {
        let mut host = gpu.download(y).unwrap();
        host[row * cols..(row + 1) * cols].fill(T::from_f64(0.0));
        gpu.upload(&host).unwrap()
    }
    fn expect(name: &str, good: NormCheck, bad: NormCheck, failures: &mut Vec<String>) {
        if !good.summary.passed || bad.summary.passed || bad.y.first_failed_row != Some(500) || bad.y.failed_rows != 1 {
            failures.push(format!("{name}: correct {good:?}\n  zeroed row 500 {bad:?}"));
        }
    }
    fn softmaxes<T: NormElement>(gpu: &Gpu, p: &RowsProblem, failures: &mut Vec<String>) {
        let x = gpu.random_normal::<T>(p.input_len(), 1).unwrap();
        let mut y = gpu.poisoned::<T>(p.output_len()).unwrap();
        softmax(gpu, p, &x, &mut y).unwrap();
        let (good, bad) = (
            check_softmax(gpu, p, &x, &y, 1).unwrap(),
            check_softmax(gpu, p, &x, &zero_row(gpu, &y, 500, p.cols), 1).unwrap(),
        );
        expect(&format!("softmax {}", T::DTYPE), good, bad, failures);
        log_softmax(gpu, p, &x, &mut y).unwrap();
        let (good, bad) = (
            check_log_softmax(gpu, p, &x, &y, 1).unwrap(),
            check_log_softmax(gpu, p, &x, &zero_row(gpu, &y, 500, p.cols), 1).unwrap(),
        );
        expect(&format!("log_softmax {}", T::DTYPE), good, bad, failures);
    }
    let gpu = gpu();
    let p = RowsProblem::dense(1024, 4096);
    let mut failures = Vec::new();
    softmaxes::<bf16>(&gpu, &p, &mut failures);
    softmaxes::<f16>(&gpu, &p, &mut failures);

    let x = gpu.random_normal::<f32>(p.input_len(), 2).unwrap();
    let (gamma, beta) = (gpu.random_normal::<f32>(p.cols, 3).unwrap(), gpu.random_normal::<f32>(p.cols, 4).unwrap());
    let mut y = gpu.poisoned::<f32>(p.output_len()).unwrap();
    let (mut mean, mut rstd) = (gpu.poisoned::<f32>(p.rows).unwrap(), gpu.poisoned::<f32>(p.rows).unwrap());
    layernorm(&gpu, &p, &x, &gamma, &beta, EPS, &mut y, &mut mean, &mut rstd).unwrap();
    let good = check_layernorm(&gpu, &p, &x, &gamma, &beta, EPS, &y, &mean, &rstd, 1).unwrap();
    let bad =
        check_layernorm(&gpu, &p, &x, &gamma, &beta, EPS, &zero_row(&gpu, &y, 500, p.cols), &mean, &rstd, 1).unwrap();
    expect("layernorm f32", good, bad, &mut failures);

    let x = gpu.random_normal::<bf16>(p.input_len(), 5).unwrap();
    let gamma = gpu.random_normal::<bf16>(p.cols, 6).unwrap();
    let mut y = gpu.poisoned::<bf16>(p.output_len()).unwrap();
    rmsnorm(&gpu, &p, &x, &gamma, EPS, &mut y, &mut rstd).unwrap();
    let good = check_rmsnorm(&gpu, &p, &x, &gamma, EPS, &y, &rstd, 1).unwrap();
    let bad = check_rmsnorm(&gpu, &p, &x, &gamma, EPS, &zero_row(&gpu, &y, 500, p.cols), &rstd, 1).unwrap();
    expect("rmsnorm bf16", good, bad, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
