//! The row operations on the GPU: softmax, log-softmax, layernorm and rmsnorm, forward and
//! backward, f32, f16 and bf16 in and out with f32 math.
//!
//! A [`Normalizer`] is the crate's handle on one GPU stream: it reads the [`Tuning`] and the
//! [`DeviceLimits`] once, caches the device's occupancy answers (one query per staged kernel
//! configuration, through `ckb_norm_*_residency`), and keeps the scratch memory of split
//! rows and backward column sums between calls. Every call validates its problem and
//! buffers before any launch, plans ([`Planner::choose`], or the variant forced), logs the
//! plan at debug level, and launches exactly that plan: the launchers query nothing and
//! never fall back, so the plan a call returns is the one that ran.
//!
//! Every call returns `Ok(Some(plan))` for what ran, or `Ok(None)` for an empty problem, on
//! which no kernel runs (saved statistics of empty rows are still set to NaN, and column
//! sums over no rows to 0, by memsets). [`Normalizer::plan`] answers the same without running.
//!
//! Results are reproducible: the work split depends only on the shape, the alignment, the
//! device and its occupancy; partial statistics and column sums are combined in a fixed
//! order, with no floating-point atomics.

use std::collections::HashMap;
use std::sync::Mutex;

use ckb_common::{Gpu, GpuError};
use cudarc::driver::{sys, CudaSlice, DevicePtr, DevicePtrMut};

use crate::launch::{self, check_launch_code, RowParams, StagedQuery, FLAG_LOG_SOFTMAX, FLAG_VECTORIZED};
use crate::problem::{check_buffers, check_eps, Extent, NormElement, NormOp, NormResult, RowsProblem};
use crate::variants::{DeviceLimits, NormPlan, NormVariant, Planner, Residency, StagedKernel, Tuning};

/// No statistics buffer: the inference forms' `mean` and `rstd`.
const NO_STATS: Option<&mut CudaSlice<f32>> = None;

/// The fused residual add's operands (`residual`, `h`) of a norm forward call, or none.
type Residual<'a, R, H> = Option<(&'a R, &'a mut H)>;
/// No saved mean: RMSNorm backward.
const NO_MEAN: Option<&CudaSlice<f32>> = None;

/// No fused add: the plain norm forward calls.
fn no_residual<'a, T: NormElement>() -> Residual<'a, CudaSlice<T>, CudaSlice<T>> {
    None
}

/// Device addresses of one call's operands (0 where the op has none).
#[derive(Debug, Clone, Copy, Default)]
struct Operands {
    x: u64,
    dy: u64,
    gamma: u64,
    beta: u64,
    out: u64,
    mean: u64,
    rstd: u64,
    dgamma: u64,
    dbeta: u64,
    sum_out: u64,
    addend: u64,
}

/// The device's occupancy answers for the planner: asked of the CUDA occupancy API through
/// the kernels' residency queries, once per configuration, then cached. A query also sets
/// its kernel's attributes on the device (dynamic shared memory, non-portable cluster sizes),
/// which the launches of the plans built from its answer rely on.
struct DeviceResidency {
    gpu: Gpu,
    /// The dynamic shared memory every staged kernel is allowed (`DeviceLimits::max_dynamic_smem`).
    smem_limit: usize,
    /// (kernel, CTAs per cluster; 1: none) -> CTAs per SM, or clusters on the device.
    answers: Mutex<HashMap<(StagedKernel, usize), usize>>,
}

impl DeviceResidency {
    fn ask(&self, kernel: &StagedKernel, cluster: usize) -> NormResult<usize> {
        let key = (*kernel, cluster);
        let answers = || self.answers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(&known) = answers().get(&key) {
            return Ok(known);
        }
        let int = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
        let mut query = StagedQuery {
            vectorized: i32::from(kernel.vectorized),
            threads: int(kernel.threads),
            smem_bytes: int(kernel.smem_bytes),
            smem_limit: int(self.smem_limit),
            cluster: int(cluster),
            resident: 0,
        };
        self.gpu.ctx.bind_to_thread().map_err(GpuError::from)?;
        // SAFETY: the query is a plain struct the callee reads and writes; it touches only
        // the current context, which is this GPU's.
        let code = unsafe { (launch::kernels(kernel.op, kernel.dtype).residency)(&mut query) };
        let resident = match code {
            0 => query.resident.max(0) as usize,
            // A cluster size the device refuses outright holds no cluster.
            launch::CUDA_ERROR_INVALID_CLUSTER_SIZE if cluster > 1 => 0,
            launch::REFUSED_PLAN => {
                return Err(GpuError::Library {
                    library: "ckb-norm",
                    detail: format!("the residency query refused {kernel:?} in clusters of {cluster}"),
                }
                .into())
            }
            _ => {
                let kernel = format!("{}_{}_residency", kernel.op.name(), kernel.dtype);
                return Err(GpuError::Kernel { kernel, code, message: ckb_common::cuda_error_string(code) }.into());
            }
        };
        answers().insert(key, resident);
        Ok(resident)
    }
}

impl Residency for DeviceResidency {
    fn ctas_per_sm(&self, kernel: &StagedKernel) -> NormResult<usize> {
        self.ask(kernel, 1)
    }

    fn clusters(&self, kernel: &StagedKernel, parts: usize) -> NormResult<usize> {
        self.ask(kernel, parts)
    }
}

/// Runs row operations on one GPU stream; the crate's primary API (the free functions in
/// the crate root run on a per-thread cached one).
pub struct Normalizer {
    gpu: Gpu,
    limits: DeviceLimits,
    tuning: Tuning,
    /// Forces a variant instead of the heuristic (benches and tests).
    forced: Option<NormVariant>,
    residency: DeviceResidency,
    /// Split rows: rows x parts x 4 floats of partial statistics.
    row_partials: Option<CudaSlice<f32>>,
    /// Backward: column sums x slots x cols floats of per-slot column sums.
    col_partials: Option<CudaSlice<f32>>,
}

impl Normalizer {
    /// A Normalizer on `gpu`'s stream with the [`Tuning`] of the environment
    /// ([`Tuning::from_env`], read here and nowhere else).
    pub fn new(gpu: &Gpu) -> NormResult<Normalizer> {
        Normalizer::with_tuning(gpu, Tuning::from_env())
    }

    /// A Normalizer with `tuning` (tuning runs); fails with [`crate::NormError::BadTuning`]
    /// on a field outside its range.
    pub fn with_tuning(gpu: &Gpu, tuning: Tuning) -> NormResult<Normalizer> {
        tuning.validate()?;
        let limits = DeviceLimits::query(gpu)?;
        Ok(Normalizer {
            gpu: gpu.clone(),
            limits,
            tuning,
            forced: None,
            residency: DeviceResidency {
                gpu: gpu.clone(),
                smem_limit: limits.max_dynamic_smem,
                answers: Mutex::new(HashMap::new()),
            },
            row_partials: None,
            col_partials: None,
        })
    }

    /// Whether this Normalizer launches on `gpu`'s stream.
    pub fn serves(&self, gpu: &Gpu) -> bool {
        std::sync::Arc::ptr_eq(&self.gpu.stream, &gpu.stream)
    }

    /// The device limits it plans with.
    pub fn limits(&self) -> DeviceLimits {
        self.limits
    }

    /// The tuning it plans with.
    pub fn tuning(&self) -> Tuning {
        self.tuning
    }

    /// Uses `variant` for every later call (None: the heuristic). A call whose rows the
    /// variant cannot hold fails with [`crate::NormError::VariantMismatch`], one whose plan
    /// the device cannot run with [`crate::NormError::PlanRefused`]; neither runs another
    /// variant instead.
    pub fn force_variant(&mut self, variant: Option<NormVariant>) -> &mut Self {
        self.forced = variant;
        self
    }

    /// The plan a call of `op` on `problem` with `T` elements would run, given whether all
    /// its buffers start on 16-byte boundaries (`aligned`; fresh allocations do); None for
    /// an empty problem. Equal to what the call returns, which is what ran.
    pub fn plan<T: NormElement>(
        &self,
        op: NormOp,
        problem: &RowsProblem,
        aligned: bool,
    ) -> NormResult<Option<NormPlan>> {
        problem.validate(op.name())?;
        if problem.is_empty() {
            return Ok(None);
        }
        self.plan_rows::<T>(op, problem, aligned).map(Some)
    }

    /// [`Normalizer::plan`] for a valid, non-empty problem.
    fn plan_rows<T: NormElement>(&self, op: NormOp, problem: &RowsProblem, aligned: bool) -> NormResult<NormPlan> {
        let planner = Planner { limits: self.limits, tuning: self.tuning, residency: &self.residency };
        match self.forced {
            Some(variant) => planner.plan(variant, op, problem, T::DTYPE, aligned),
            None => planner.choose(op, problem, T::DTYPE, aligned),
        }
    }

    /// `y = softmax(x)` along each row. Returns the plan that ran (None for an empty problem).
    pub fn softmax<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        y: &mut impl DevicePtrMut<T>,
    ) -> NormResult<Option<NormPlan>> {
        self.softmax_forward(NormOp::Softmax, problem, x, y)
    }

    /// `y = log_softmax(x)` along each row.
    pub fn log_softmax<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        y: &mut impl DevicePtrMut<T>,
    ) -> NormResult<Option<NormPlan>> {
        self.softmax_forward(NormOp::LogSoftmax, problem, x, y)
    }

    fn softmax_forward<T: NormElement>(
        &mut self,
        op: NormOp,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        y: &mut impl DevicePtrMut<T>,
    ) -> NormResult<Option<NormPlan>> {
        check_buffers(op, problem, &[("x", Extent::Rows, x.len()), ("y", Extent::Dense, y.len())])?;
        if problem.is_empty() {
            return Ok(None);
        }
        let stream = self.gpu.stream.clone();
        let (x, _x) = x.device_ptr(&stream);
        let (out, _y) = y.device_ptr_mut(&stream);
        self.launch::<T>(op, problem, Operands { x, out, ..Operands::default() }, 0.0).map(Some)
    }

    /// `y = (x - mean) * rstd * gamma + beta` along each row, with the biased variance;
    /// writes each row's mean and rstd = 1 / sqrt(var + eps) (f32, one per row) for the
    /// backward pass. [`Normalizer::layernorm_inference`] runs the same kernel without them.
    pub fn layernorm<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        beta: &impl DevicePtr<T>,
        eps: f32,
        y: &mut impl DevicePtrMut<T>,
        mean: &mut impl DevicePtrMut<f32>,
        rstd: &mut impl DevicePtrMut<f32>,
    ) -> NormResult<Option<NormPlan>> {
        self.norm_forward(
            NormOp::LayerNorm,
            problem,
            x,
            no_residual::<T>(),
            gamma,
            Some(beta),
            eps,
            y,
            Some(mean),
            Some(rstd),
        )
    }

    /// [`Normalizer::layernorm`] without saving mean and rstd (inference): the same plan and
    /// the same `y`, bit for bit.
    pub fn layernorm_inference<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        beta: &impl DevicePtr<T>,
        eps: f32,
        y: &mut impl DevicePtrMut<T>,
    ) -> NormResult<Option<NormPlan>> {
        self.norm_forward(
            NormOp::LayerNorm,
            problem,
            x,
            no_residual::<T>(),
            gamma,
            Some(beta),
            eps,
            y,
            NO_STATS,
            NO_STATS,
        )
    }

    /// `y = x * rstd * gamma` along each row; writes rstd = 1 / sqrt(mean(x^2) + eps) (f32)
    /// for the backward pass. [`Normalizer::rmsnorm_inference`] runs the same kernel without it.
    pub fn rmsnorm<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        eps: f32,
        y: &mut impl DevicePtrMut<T>,
        rstd: &mut impl DevicePtrMut<f32>,
    ) -> NormResult<Option<NormPlan>> {
        self.norm_forward(
            NormOp::RmsNorm,
            problem,
            x,
            no_residual::<T>(),
            gamma,
            None::<&CudaSlice<T>>,
            eps,
            y,
            NO_STATS,
            Some(rstd),
        )
    }

    /// [`Normalizer::rmsnorm`] without saving rstd (inference): the same plan and the same
    /// `y`, bit for bit.
    pub fn rmsnorm_inference<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        eps: f32,
        y: &mut impl DevicePtrMut<T>,
    ) -> NormResult<Option<NormPlan>> {
        self.norm_forward(
            NormOp::RmsNorm,
            problem,
            x,
            no_residual::<T>(),
            gamma,
            None::<&CudaSlice<T>>,
            eps,
            y,
            NO_STATS,
            NO_STATS,
        )
    }

    /// Fused residual add and LayerNorm: `h = x + residual` (rounded to T, as a separate add
    /// would store it), then `y` = [`Normalizer::layernorm`] of h, saving mean and rstd.
    /// `residual` shares x's row stride; `h` and `y` are dense. One pass over the rows:
    /// reads x and the residual once, writes h and y once.
    pub fn add_layernorm<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        residual: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        beta: &impl DevicePtr<T>,
        eps: f32,
        h: &mut impl DevicePtrMut<T>,
        y: &mut impl DevicePtrMut<T>,
        mean: &mut impl DevicePtrMut<f32>,
        rstd: &mut impl DevicePtrMut<f32>,
    ) -> NormResult<Option<NormPlan>> {
        let add = Some((residual, h));
        self.norm_forward(NormOp::AddLayerNorm, problem, x, add, gamma, Some(beta), eps, y, Some(mean), Some(rstd))
    }

    /// [`Normalizer::add_layernorm`] without saving mean and rstd (inference).
    pub fn add_layernorm_inference<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        residual: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        beta: &impl DevicePtr<T>,
        eps: f32,
        h: &mut impl DevicePtrMut<T>,
        y: &mut impl DevicePtrMut<T>,
    ) -> NormResult<Option<NormPlan>> {
        let add = Some((residual, h));
        self.norm_forward(NormOp::AddLayerNorm, problem, x, add, gamma, Some(beta), eps, y, NO_STATS, NO_STATS)
    }

    /// Fused residual add and RMSNorm: `h = x + residual` (rounded to T), then `y` =
    /// [`Normalizer::rmsnorm`] of h, saving rstd; layouts as [`Normalizer::add_layernorm`].
    pub fn add_rmsnorm<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        residual: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        eps: f32,
        h: &mut impl DevicePtrMut<T>,
        y: &mut impl DevicePtrMut<T>,
        rstd: &mut impl DevicePtrMut<f32>,
    ) -> NormResult<Option<NormPlan>> {
        let add = Some((residual, h));
        self.norm_forward(
            NormOp::AddRmsNorm,
            problem,
            x,
            add,
            gamma,
            None::<&CudaSlice<T>>,
            eps,
            y,
            NO_STATS,
            Some(rstd),
        )
    }

    /// [`Normalizer::add_rmsnorm`] without saving rstd (inference).
    pub fn add_rmsnorm_inference<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        residual: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        eps: f32,
        h: &mut impl DevicePtrMut<T>,
        y: &mut impl DevicePtrMut<T>,
    ) -> NormResult<Option<NormPlan>> {
        let add = Some((residual, h));
        self.norm_forward(NormOp::AddRmsNorm, problem, x, add, gamma, None::<&CudaSlice<T>>, eps, y, NO_STATS, NO_STATS)
    }

    /// LayerNorm (with `beta`) and RMSNorm forward, fused with a residual add or not, saving
    /// whichever statistics are given: buffer and eps checks, statistics of empty rows,
    /// launch. The kernels store only through the statistics pointers that are not null.
    #[allow(clippy::too_many_arguments)]
    fn norm_forward<
        T: NormElement,
        A: DevicePtr<T>,
        H: DevicePtrMut<T>,
        B: DevicePtr<T>,
        M: DevicePtrMut<f32>,
        R: DevicePtrMut<f32>,
    >(
        &mut self,
        op: NormOp,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        add: Residual<'_, A, H>,
        gamma: &impl DevicePtr<T>,
        beta: Option<&B>,
        eps: f32,
        y: &mut impl DevicePtrMut<T>,
        mut mean: Option<&mut M>,
        mut rstd: Option<&mut R>,
    ) -> NormResult<Option<NormPlan>> {
        let mut buffers = vec![("x", Extent::Rows, x.len())];
        if let Some((residual, h)) = &add {
            buffers.extend([("residual", Extent::Rows, residual.len()), ("h", Extent::Dense, h.len())]);
        }
        buffers.push(("gamma", Extent::PerColumn, gamma.len()));
        buffers.extend(beta.map(|b| ("beta", Extent::PerColumn, b.len())));
        buffers.push(("y", Extent::Dense, y.len()));
        buffers.extend(mean.as_ref().map(|m| ("mean", Extent::PerRow, m.len())));
        buffers.extend(rstd.as_ref().map(|r| ("rstd", Extent::PerRow, r.len())));
        check_buffers(op, problem, &buffers)?;
        check_eps(op.name(), eps)?;
        if problem.cols == 0 {
            // Statistics of empty rows are undefined (the reference's NaN).
            if let Some(mean) = mean {
                self.fill_nan(mean, problem.rows)?;
            }
            if let Some(rstd) = rstd {
                self.fill_nan(rstd, problem.rows)?;
            }
            return Ok(None);
        }
        if problem.rows == 0 {
            return Ok(None);
        }
        let stream = self.gpu.stream.clone();
        let (x, _x) = x.device_ptr(&stream);
        let (residual, sum_out) = match add {
            Some((residual, h)) => (Some(residual.device_ptr(&stream)), Some(h.device_ptr_mut(&stream))),
            None => (None, None),
        };
        let (gamma, _g) = gamma.device_ptr(&stream);
        let beta = beta.map(|b| b.device_ptr(&stream));
        let (out, _y) = y.device_ptr_mut(&stream);
        let mean = mean.as_mut().map(|m| m.device_ptr_mut(&stream));
        let rstd = rstd.as_mut().map(|r| r.device_ptr_mut(&stream));
        let operands = Operands {
            x,
            dy: residual.as_ref().map_or(0, |(p, _)| *p),
            sum_out: sum_out.as_ref().map_or(0, |(p, _)| *p),
            gamma,
            beta: beta.as_ref().map_or(0, |(p, _)| *p),
            out,
            mean: mean.as_ref().map_or(0, |(p, _)| *p),
            rstd: rstd.as_ref().map_or(0, |(p, _)| *p),
            ..Operands::default()
        };
        self.launch::<T>(op, problem, operands, eps).map(Some)
    }

    /// `dx = y * (dy - sum(dy * y))` along each row, from the forward output `y`. `y` and
    /// `dy` share the problem's row stride; `dx` is dense.
    pub fn softmax_backward<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        y: &impl DevicePtr<T>,
        dy: &impl DevicePtr<T>,
        dx: &mut impl DevicePtrMut<T>,
    ) -> NormResult<Option<NormPlan>> {
        check_buffers(
            NormOp::SoftmaxBackward,
            problem,
            &[("y", Extent::Rows, y.len()), ("dy", Extent::Rows, dy.len()), ("dx", Extent::Dense, dx.len())],
        )?;
        if problem.is_empty() {
            return Ok(None);
        }
        let stream = self.gpu.stream.clone();
        let (x, _y) = y.device_ptr(&stream);
        let (dy, _dy) = dy.device_ptr(&stream);
        let (out, _dx) = dx.device_ptr_mut(&stream);
        self.launch::<T>(NormOp::SoftmaxBackward, problem, Operands { x, dy, out, ..Operands::default() }, 0.0)
            .map(Some)
    }

    /// LayerNorm gradients from the saved `mean` and `rstd`: `dx` (dense) and the column
    /// sums `dgamma = sum_rows(dy * xhat)`, `dbeta = sum_rows(dy)`, reduced in a fixed order.
    pub fn layernorm_backward<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        dy: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        mean: &impl DevicePtr<f32>,
        rstd: &impl DevicePtr<f32>,
        dx: &mut impl DevicePtrMut<T>,
        dgamma: &mut impl DevicePtrMut<T>,
        dbeta: &mut impl DevicePtrMut<T>,
    ) -> NormResult<Option<NormPlan>> {
        self.norm_backward(
            NormOp::LayerNormBackward,
            problem,
            x,
            dy,
            None::<&CudaSlice<T>>,
            gamma,
            Some(mean),
            rstd,
            dx,
            dgamma,
            Some(dbeta),
        )
    }

    /// The backward pass of [`Normalizer::add_layernorm`]: [`Normalizer::layernorm_backward`]
    /// of the normalized `h`, plus `dh`, h's own gradient (from its later uses as the
    /// residual stream): `dx` is then the gradient of x and of the residual alike. `dh`
    /// shares h's row stride.
    pub fn add_layernorm_backward<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        h: &impl DevicePtr<T>,
        dy: &impl DevicePtr<T>,
        dh: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        mean: &impl DevicePtr<f32>,
        rstd: &impl DevicePtr<f32>,
        dx: &mut impl DevicePtrMut<T>,
        dgamma: &mut impl DevicePtrMut<T>,
        dbeta: &mut impl DevicePtrMut<T>,
    ) -> NormResult<Option<NormPlan>> {
        let op = NormOp::LayerNormBackward;
        self.norm_backward(op, problem, h, dy, Some(dh), gamma, Some(mean), rstd, dx, dgamma, Some(dbeta))
    }

    /// RMSNorm gradients from the saved `rstd`: `dx` (dense) and `dgamma = sum_rows(dy * x * rstd)`.
    pub fn rmsnorm_backward<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        dy: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        rstd: &impl DevicePtr<f32>,
        dx: &mut impl DevicePtrMut<T>,
        dgamma: &mut impl DevicePtrMut<T>,
    ) -> NormResult<Option<NormPlan>> {
        self.norm_backward(
            NormOp::RmsNormBackward,
            problem,
            x,
            dy,
            None::<&CudaSlice<T>>,
            gamma,
            NO_MEAN,
            rstd,
            dx,
            dgamma,
            None::<&mut CudaSlice<T>>,
        )
    }

    /// The backward pass of [`Normalizer::add_rmsnorm`]: [`Normalizer::rmsnorm_backward`] of
    /// `h`, plus `dh`, as [`Normalizer::add_layernorm_backward`].
    pub fn add_rmsnorm_backward<T: NormElement>(
        &mut self,
        problem: &RowsProblem,
        h: &impl DevicePtr<T>,
        dy: &impl DevicePtr<T>,
        dh: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        rstd: &impl DevicePtr<f32>,
        dx: &mut impl DevicePtrMut<T>,
        dgamma: &mut impl DevicePtrMut<T>,
    ) -> NormResult<Option<NormPlan>> {
        self.norm_backward(
            NormOp::RmsNormBackward,
            problem,
            h,
            dy,
            Some(dh),
            gamma,
            NO_MEAN,
            rstd,
            dx,
            dgamma,
            None::<&mut CudaSlice<T>>,
        )
    }

    /// LayerNorm (with `mean` and `dbeta`) and RMSNorm backward, behind a fused add (with
    /// `addend`) or not: buffer checks, column sums over no rows, launch.
    #[allow(clippy::too_many_arguments)]
    fn norm_backward<T: NormElement, D: DevicePtr<T>, M: DevicePtr<f32>, B: DevicePtrMut<T>>(
        &mut self,
        op: NormOp,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        dy: &impl DevicePtr<T>,
        addend: Option<&D>,
        gamma: &impl DevicePtr<T>,
        mean: Option<&M>,
        rstd: &impl DevicePtr<f32>,
        dx: &mut impl DevicePtrMut<T>,
        dgamma: &mut impl DevicePtrMut<T>,
        mut dbeta: Option<&mut B>,
    ) -> NormResult<Option<NormPlan>> {
        let mut buffers = vec![("x", Extent::Rows, x.len()), ("dy", Extent::Rows, dy.len())];
        buffers.extend(addend.map(|a| ("dh", Extent::Rows, a.len())));
        buffers.push(("gamma", Extent::PerColumn, gamma.len()));
        buffers.extend(mean.map(|m| ("mean", Extent::PerRow, m.len())));
        buffers.extend([
            ("rstd", Extent::PerRow, rstd.len()),
            ("dx", Extent::Dense, dx.len()),
            ("dgamma", Extent::PerColumn, dgamma.len()),
        ]);
        buffers.extend(dbeta.as_ref().map(|b| ("dbeta", Extent::PerColumn, b.len())));
        check_buffers(op, problem, &buffers)?;
        if problem.cols == 0 {
            return Ok(None);
        }
        if problem.rows == 0 {
            // Sums over no rows.
            self.fill_zero(dgamma, problem.cols)?;
            if let Some(dbeta) = dbeta {
                self.fill_zero(dbeta, problem.cols)?;
            }
            return Ok(None);
        }
        let stream = self.gpu.stream.clone();
        let (x, _x) = x.device_ptr(&stream);
        let (dy, _dy) = dy.device_ptr(&stream);
        let addend = addend.map(|a| a.device_ptr(&stream));
        let (gamma, _g) = gamma.device_ptr(&stream);
        let mean = mean.map(|m| m.device_ptr(&stream));
        let (rstd, _r) = rstd.device_ptr(&stream);
        let (out, _dx) = dx.device_ptr_mut(&stream);
        let (dgamma, _dg) = dgamma.device_ptr_mut(&stream);
        let dbeta = dbeta.as_mut().map(|b| b.device_ptr_mut(&stream));
        let operands = Operands {
            x,
            dy,
            gamma,
            mean: mean.as_ref().map_or(0, |(p, _)| *p),
            rstd,
            out,
            dgamma,
            dbeta: dbeta.as_ref().map_or(0, |(p, _)| *p),
            addend: addend.as_ref().map_or(0, |(p, _)| *p),
            ..Operands::default()
        };
        self.launch::<T>(op, problem, operands, 0.0).map(Some)
    }

    /// Plans for the operands' alignment and runs the plan. `problem` is valid and
    /// non-empty, and the operands hold what it needs.
    fn launch<T: NormElement>(
        &mut self,
        op: NormOp,
        problem: &RowsProblem,
        ops: Operands,
        eps: f32,
    ) -> NormResult<NormPlan> {
        // 16-byte accesses need every row and parameter to start on a 16-byte boundary
        // (absent operands are 0; a bit test, see `multiple_of`); the planner adds the
        // shape's conditions.
        let aligned =
            [ops.x, ops.dy, ops.gamma, ops.beta, ops.out, ops.sum_out, ops.addend].iter().all(|a| a & 15 == 0);
        let plan = self.plan_rows::<T>(op, problem, aligned)?;
        self.run::<T>(op, problem, ops, eps, plan)?;
        Ok(plan)
    }

    /// Makes sure the scratch memory `plan` needs is there, and launches it as given.
    fn run<T: NormElement>(
        &mut self,
        op: NormOp,
        problem: &RowsProblem,
        ops: Operands,
        eps: f32,
        plan: NormPlan,
    ) -> NormResult<()> {
        let stream = self.gpu.stream.clone();
        let row_floats = plan.row_partial_floats(problem.rows);
        if row_floats > 0 && self.row_partials.as_ref().is_none_or(|b| b.len() < row_floats) {
            self.row_partials = Some(stream.alloc_zeros::<f32>(row_floats).map_err(GpuError::from)?);
        }
        let col_floats = plan.column_partial_floats(op, problem.cols);
        if col_floats > 0 && self.col_partials.as_ref().is_none_or(|b| b.len() < col_floats) {
            self.col_partials = Some(stream.alloc_zeros::<f32>(col_floats).map_err(GpuError::from)?);
        }
        let row_partials = self.row_partials.as_mut().filter(|_| row_floats > 0).map(|b| b.device_ptr_mut(&stream));
        let col_partials = self.col_partials.as_mut().filter(|_| col_floats > 0).map(|b| b.device_ptr_mut(&stream));

        let (layout, mode) = plan.codes();
        let log = if op == NormOp::LogSoftmax { FLAG_LOG_SOFTMAX } else { 0 };
        let params = RowParams {
            x: ops.x,
            dy: ops.dy,
            gamma: ops.gamma,
            beta: ops.beta,
            out: ops.out,
            mean: ops.mean,
            rstd: ops.rstd,
            row_partials: row_partials.as_ref().map_or(0, |(p, _)| *p),
            col_partials: col_partials.as_ref().map_or(0, |(p, _)| *p),
            dgamma: ops.dgamma,
            dbeta: ops.dbeta,
            sum_out: ops.sum_out,
            addend: ops.addend,
            rows: problem.rows as i64,
            in_stride: problem.row_stride as i64,
            out_stride: problem.cols as i64,
            cols: problem.cols as i32,
            packs: plan.packs as i32,
            threads: plan.threads as i32,
            parts: plan.parts as i32,
            slots: plan.slots as i32,
            layout,
            mode,
            flags: log | if plan.vectorized { FLAG_VECTORIZED } else { 0 },
            eps,
            stages: plan.stages as i32,
            smem_limit: i32::try_from(self.limits.max_dynamic_smem).unwrap_or(i32::MAX),
            lanes: plan.lanes() as i32,
            width: plan.width as i32,
            reserved: 0,
        };
        tracing::debug!(
            op = op.name(),
            dtype = %T::DTYPE,
            rows = problem.rows,
            cols = problem.cols,
            row_stride = problem.row_stride,
            %plan,
            "norm launch"
        );
        self.gpu.ctx.bind_to_thread().map_err(GpuError::from)?;
        // SAFETY: the caller validated every buffer against the problem; the scratch
        // buffers are sized for the plan; all live on this stream's context, and their
        // guards outlive the launch. The launcher checks the plan before it launches.
        let code = unsafe { (launch::kernels(op, T::DTYPE).launch)(&params, stream.cu_stream() as launch::Stream) };
        check_launch_code(code, op, T::DTYPE, &plan, self.limits.max_dynamic_smem)
    }

    /// Writes NaN to the first n floats (statistics of empty rows).
    fn fill_nan(&self, buf: &mut impl DevicePtrMut<f32>, n: usize) -> NormResult<()> {
        if n == 0 {
            return Ok(());
        }
        let (ptr, _sync) = buf.device_ptr_mut(&self.gpu.stream);
        // SAFETY: ptr addresses at least n floats on this context.
        unsafe { sys::cuMemsetD32Async(ptr, f32::NAN.to_bits(), n, self.gpu.stream.cu_stream()) }
            .result()
            .map_err(GpuError::from)?;
        Ok(())
    }

    /// Writes 0 to the first n elements (column sums over no rows).
    fn fill_zero<T: NormElement>(&self, buf: &mut impl DevicePtrMut<T>, n: usize) -> NormResult<()> {
        if n == 0 {
            return Ok(());
        }
        let words = n * T::DTYPE.size_bytes() / 2;
        let (ptr, _sync) = buf.device_ptr_mut(&self.gpu.stream);
        // SAFETY: ptr addresses at least n elements (`words` 16-bit words) on this context.
        unsafe { sys::cuMemsetD16Async(ptr, 0, words, self.gpu.stream.cu_stream()) }
            .result()
            .map_err(GpuError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{NormError, Refusal};

    /// The launcher runs a plan as given or refuses it with a code that comes back typed,
    /// running nothing: depths, packs and clusters it was not compiled for, rings past the
    /// shared memory the residency query allowed.
    #[test]
    #[ignore = "needs a GPU"]
    fn the_launcher_refuses_plans_it_cannot_run() {
        let gpu = Gpu::new(0).expect("this test needs a Hopper GPU");
        let mut n = Normalizer::new(&gpu).unwrap();
        let p = RowsProblem::dense(64, 4096);
        let x = gpu.random_normal::<f32>(p.input_len(), 1).unwrap();
        let mut y = gpu.poisoned::<f32>(p.output_len()).unwrap();
        let plan = n.plan::<f32>(NormOp::Softmax, &p, true).unwrap().unwrap();
        assert_eq!((plan.variant, plan.threads, plan.packs, plan.vectorized), (NormVariant::Block, 128, 8, true));
        let limit = n.limits().max_dynamic_smem;
        let refusals = [
            (NormPlan { stages: 5, ..plan }, Refusal::Inconsistent),
            (NormPlan { vectorized: false, stages: 2, ..plan }, Refusal::Inconsistent),
            (NormPlan { packs: plan.packs + 1, ..plan }, Refusal::Inconsistent),
            (NormPlan { threads: 512, ..plan }, Refusal::Inconsistent),
            (NormPlan { variant: NormVariant::Cluster, parts: 17, ..plan }, Refusal::Inconsistent),
            (NormPlan { packs: 64, stages: 2, ..plan }, Refusal::SharedMemory { needed: 2 * 128 * 64 * 16, limit }),
        ];
        let stream = gpu.stream.clone();
        let results: Vec<NormResult<()>> = {
            let (x, _x) = x.device_ptr(&stream);
            let (out, _y) = y.device_ptr_mut(&stream);
            let ops = Operands { x, out, ..Operands::default() };
            refusals.iter().map(|(bad, _)| n.run::<f32>(NormOp::Softmax, &p, ops, 0.0, *bad)).collect()
        };
        for ((bad, want), got) in refusals.iter().zip(results) {
            match got {
                Err(NormError::PlanRefused { plan, reason, .. }) if plan == *bad && reason == *want => {}
                other => panic!("{bad}: {other:?}, not a {want:?} refusal"),
            }
        }
        assert!(gpu.download(&y).unwrap().iter().all(|v| v.is_nan()), "a refused plan wrote y");
        {
            let (x, _x) = x.device_ptr(&stream);
            let (out, _y) = y.device_ptr_mut(&stream);
            n.run::<f32>(NormOp::Softmax, &p, Operands { x, out, ..Operands::default() }, 0.0, plan).unwrap();
        }
        assert!(gpu.download(&y).unwrap().iter().all(|v| v.is_finite()), "the plan as planned left y unwritten");
    }
}
