//! The row operations on the GPU: softmax, log-softmax, layernorm and rmsnorm, forward and
//! backward, f32, f16 and bf16 in and out with f32 math.
//!
//! A [`Normalizer`] keeps the scratch memory of split rows and backward column sums between
//! calls; the free functions in the crate root make one per call. Every call validates its
//! problem and buffers before any launch, picks a variant ([`NormVariant::choose`], or the
//! one forced), and logs it at debug level.
//!
//! Results are reproducible: the work split depends only on the shape, the alignment, the
//! device and its occupancy; partial statistics and column sums are combined in a fixed
//! order, with no floating-point atomics.

use ckb_common::{Gpu, GpuError};
use cudarc::driver::{sys, CudaSlice, DevicePtr, DevicePtrMut};

use crate::launch::{self, check, RowParams, FLAG_LOG_SOFTMAX, FLAG_VECTORIZED};
use crate::problem::{check_buffers, check_eps, Extent, NormElement, NormOp, NormResult, RowsProblem};
use crate::variants::{NormPlan, NormVariant, StagedShape};

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
}

/// Runs row operations on one GPU, keeping their scratch memory.
pub struct Normalizer {
    gpu: Gpu,
    sm_count: usize,
    /// Forces a variant instead of the heuristic (benches and tests).
    forced: Option<NormVariant>,
    /// Forward staged CTAs' shape (the defaults unless a tuning run overrides them).
    shape: StagedShape,
    /// Split rows: rows x parts x 4 floats of partial statistics.
    row_partials: Option<CudaSlice<f32>>,
    /// Backward: column sums x slots x cols floats of per-slot column sums.
    col_partials: Option<CudaSlice<f32>>,
}

impl Normalizer {
    pub fn new(gpu: &Gpu) -> NormResult<Normalizer> {
        Ok(Normalizer {
            gpu: gpu.clone(),
            sm_count: gpu.sm_count(),
            forced: None,
            shape: StagedShape::from_env(),
            row_partials: None,
            col_partials: None,
        })
    }

    /// Uses `variant` for every later call (None: the heuristic). A call whose problem the
    /// variant cannot hold fails with [`crate::NormError::VariantMismatch`].
    pub fn force_variant(&mut self, variant: Option<NormVariant>) -> &mut Self {
        self.forced = variant;
        self
    }

    /// The plan a call of `op` on `problem` with `T` elements would use.
    pub fn plan<T: NormElement>(&self, op: NormOp, problem: &RowsProblem) -> NormResult<NormPlan> {
        match self.forced {
            Some(variant) => variant.plan_shaped(op, problem, T::DTYPE, self.sm_count, self.shape),
            None => Ok(NormVariant::choose_shaped(op, problem, T::DTYPE, self.sm_count, self.shape)),
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
    /// writes each row's mean and rstd = 1 / sqrt(var + eps) (f32, one per row).
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
        self.norm_forward(NormOp::LayerNorm, problem, x, gamma, Some(beta), eps, y, Some(mean), rstd)
    }

    /// `y = x * rstd * gamma` along each row; writes rstd = 1 / sqrt(mean(x^2) + eps) (f32).
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
            gamma,
            None::<&CudaSlice<T>>,
            eps,
            y,
            None::<&mut CudaSlice<f32>>,
            rstd,
        )
    }

    /// LayerNorm (with `beta` and `mean`) and RMSNorm forward: buffer and eps checks,
    /// statistics of empty rows, launch.
    #[allow(clippy::too_many_arguments)]
    fn norm_forward<T: NormElement, B: DevicePtr<T>, M: DevicePtrMut<f32>>(
        &mut self,
        op: NormOp,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        beta: Option<&B>,
        eps: f32,
        y: &mut impl DevicePtrMut<T>,
        mut mean: Option<&mut M>,
        rstd: &mut impl DevicePtrMut<f32>,
    ) -> NormResult<Option<NormPlan>> {
        let mut buffers = vec![("x", Extent::Rows, x.len()), ("gamma", Extent::PerColumn, gamma.len())];
        buffers.extend(beta.map(|b| ("beta", Extent::PerColumn, b.len())));
        buffers.push(("y", Extent::Dense, y.len()));
        buffers.extend(mean.as_ref().map(|m| ("mean", Extent::PerRow, m.len())));
        buffers.push(("rstd", Extent::PerRow, rstd.len()));
        check_buffers(op, problem, &buffers)?;
        check_eps(op.name(), eps)?;
        if problem.cols == 0 {
            // Statistics of empty rows are undefined (the reference's NaN).
            if let Some(mean) = mean {
                self.fill_nan(mean, problem.rows)?;
            }
            self.fill_nan(rstd, problem.rows)?;
            return Ok(None);
        }
        if problem.rows == 0 {
            return Ok(None);
        }
        let stream = self.gpu.stream.clone();
        let (x, _x) = x.device_ptr(&stream);
        let (gamma, _g) = gamma.device_ptr(&stream);
        let beta = beta.map(|b| b.device_ptr(&stream));
        let (out, _y) = y.device_ptr_mut(&stream);
        let mean = mean.as_mut().map(|m| m.device_ptr_mut(&stream));
        let (rstd, _r) = rstd.device_ptr_mut(&stream);
        let operands = Operands {
            x,
            gamma,
            beta: beta.as_ref().map_or(0, |(p, _)| *p),
            out,
            mean: mean.as_ref().map_or(0, |(p, _)| *p),
            rstd,
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
        self.norm_backward(NormOp::LayerNormBackward, problem, x, dy, gamma, Some(mean), rstd, dx, dgamma, Some(dbeta))
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
            gamma,
            None::<&CudaSlice<f32>>,
            rstd,
            dx,
            dgamma,
            None::<&mut CudaSlice<T>>,
        )
    }

    /// LayerNorm (with `mean` and `dbeta`) and RMSNorm backward: buffer checks, column sums
    /// over no rows, launch.
    #[allow(clippy::too_many_arguments)]
    fn norm_backward<T: NormElement, M: DevicePtr<f32>, B: DevicePtrMut<T>>(
        &mut self,
        op: NormOp,
        problem: &RowsProblem,
        x: &impl DevicePtr<T>,
        dy: &impl DevicePtr<T>,
        gamma: &impl DevicePtr<T>,
        mean: Option<&M>,
        rstd: &impl DevicePtr<f32>,
        dx: &mut impl DevicePtrMut<T>,
        dgamma: &mut impl DevicePtrMut<T>,
        mut dbeta: Option<&mut B>,
    ) -> NormResult<Option<NormPlan>> {
        let mut buffers = vec![
            ("x", Extent::Rows, x.len()),
            ("dy", Extent::Rows, dy.len()),
            ("gamma", Extent::PerColumn, gamma.len()),
        ];
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
            ..Operands::default()
        };
        self.launch::<T>(op, problem, operands, 0.0).map(Some)
    }

    /// Plans, makes sure the scratch memory is there, and launches. `problem` is valid and
    /// non-empty, and the operands hold what it needs.
    fn launch<T: NormElement>(
        &mut self,
        op: NormOp,
        problem: &RowsProblem,
        ops: Operands,
        eps: f32,
    ) -> NormResult<NormPlan> {
        let plan = self.plan::<T>(op, problem)?;
        let pack = 16 / T::DTYPE.size_bytes();
        // 16-byte accesses need every row and parameter to start on a 16-byte boundary
        // (bit tests: pack and 16 are powers of two; is_multiple_of is newer than our MSRV).
        let vectorized = [ops.x, ops.dy, ops.gamma, ops.beta, ops.out].iter().all(|a| a & 15 == 0)
            && problem.cols & (pack - 1) == 0
            && problem.row_stride & (pack - 1) == 0;
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
            flags: log | if vectorized { FLAG_VECTORIZED } else { 0 },
            eps,
            sm_count: self.sm_count as i32,
        };
        tracing::debug!(
            op = op.name(),
            dtype = %T::DTYPE,
            rows = problem.rows,
            cols = problem.cols,
            row_stride = problem.row_stride,
            variant = plan.variant.name(),
            threads = plan.threads,
            parts = plan.parts,
            vectorized,
            "norm launch"
        );
        self.gpu.ctx.bind_to_thread().map_err(GpuError::from)?;
        // SAFETY: the caller validated every buffer against the problem; the scratch
        // buffers are sized for the plan; all live on this stream's context, and their
        // guards outlive the launch.
        let code = unsafe { launch::launcher(op, T::DTYPE)(&params, stream.cu_stream() as launch::Stream) };
        check(code, || format!("{}_{} ({})", op.name(), T::DTYPE, plan.variant.name()))?;
        Ok(plan)
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
