//! Reductions: sum, mean, max, min, sum of squares, L2 norm, argmax and argmin, over a
//! whole tensor or along one axis of a contiguous row-major 1-, 2- or 3-D tensor; f32, f16
//! and bf16 inputs accumulated in f32, written as f32 or as the input type.
//!
//! Results are bitwise reproducible: the work split depends only on the shape, the view's
//! alignment and the device's SM count, and partials are combined in a fixed order with no
//! floating-point atomics. Conventions follow [`crate::reference`]: NaN propagates (argmax
//! and argmin return the first NaN), ties go to the first index, an empty sum is 0, an empty
//! mean NaN, and max, min, argmax and argmin of nothing are [`ReduceError::EmptyInput`].
//!
//! A [`Reducer`] keeps the scratch memory of split reductions between calls.
//!
//! ```no_run
//! # use ckb_common::{bf16, Gpu};
//! # use ckb_reduce::reduce::{Reducer, ReduceOp};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gpu = Gpu::new(0)?;
//! let x = gpu.random_normal::<bf16>(1 << 24, 7)?;
//! let mut total = gpu.zeros::<f32>(1)?;
//! let mut reducer = Reducer::new(&gpu)?;
//! reducer.reduce(ReduceOp::Sum, &x, &mut total)?;
//! # Ok(()) }
//! ```

use ckb_common::{DType, Gpu, GpuError};
use cudarc::driver::{sys, CudaSlice, DevicePtr, DevicePtrMut};

use crate::launch::{self, check, Kind, ReduceParams, POST_MEAN, POST_NONE, POST_SQRT};
use crate::problem::{require_len, EwElement, ReduceError, ReduceResult, VECTOR_BYTES};
pub use crate::problem::{ArgOp, AxisProblem, ReduceOp, ReduceOutput};
pub use crate::variants::{ReducePlan, ReduceVariant, REDUCE_VARIANTS};

/// Runs reductions on one GPU, keeping their scratch memory.
pub struct Reducer {
    gpu: Gpu,
    sm_count: usize,
    /// Forces a variant instead of the heuristic (benches and tests).
    forced: Option<ReduceVariant>,
    partials: Option<CudaSlice<u8>>,
    /// Arrival counters of single-pass splits: zeroed once, left zeroed by the kernels.
    counters: Option<CudaSlice<u32>>,
}

impl Reducer {
    /// A reducer on `gpu`'s stream. It holds no scratch memory until a split reduction needs
    /// some, and keeps what it allocated for later calls.
    pub fn new(gpu: &Gpu) -> ReduceResult<Reducer> {
        Ok(Reducer { gpu: gpu.clone(), sm_count: gpu.sm_count(), forced: None, partials: None, counters: None })
    }

    /// Uses `variant` for every later call (None: the heuristic). A call whose problem the
    /// variant cannot run fails with [`ReduceError::VariantMismatch`].
    pub fn force_variant(&mut self, variant: Option<ReduceVariant>) -> &mut Self {
        self.forced = variant;
        self
    }

    /// The plan a call on `problem` with `T` input would use.
    pub fn plan<T: EwElement>(&self, problem: &AxisProblem) -> ReduceResult<ReducePlan> {
        let bytes = T::DTYPE.size_bytes();
        match self.forced {
            Some(variant) => variant.plan(problem, bytes, self.sm_count),
            None => Ok(ReduceVariant::choose(problem, bytes, self.sm_count)),
        }
    }

    /// `op` over all of `x` into `out[0]` (`out` holds one element).
    pub fn reduce<T: EwElement, O: ReduceOutput<T>>(
        &mut self,
        op: ReduceOp,
        x: &impl DevicePtr<T>,
        out: &mut impl DevicePtrMut<O>,
    ) -> ReduceResult<Option<ReducePlan>> {
        require_len(op.name(), "out", 1, out.len())?;
        self.reduce_problem(op, AxisProblem::full(x.len()), x, out)
    }

    /// `op` along `axis` of the contiguous row-major tensor `x` of `shape`; `out` holds the
    /// other dimensions, row-major.
    pub fn reduce_axis<T: EwElement, O: ReduceOutput<T>>(
        &mut self,
        op: ReduceOp,
        x: &impl DevicePtr<T>,
        shape: &[usize],
        axis: usize,
        out: &mut impl DevicePtrMut<O>,
    ) -> ReduceResult<Option<ReducePlan>> {
        let problem = AxisProblem::along(op.name(), shape, axis)?;
        require_len(op.name(), "x", problem.elements(), x.len())?;
        require_len(op.name(), "out", problem.outputs(), out.len())?;
        self.reduce_problem(op, problem, x, out)
    }

    /// The first index of the extreme of all of `x` (flat), and its value.
    pub fn arg_reduce<T: EwElement, O: ReduceOutput<T>>(
        &mut self,
        op: ArgOp,
        x: &impl DevicePtr<T>,
        value: &mut impl DevicePtrMut<O>,
        index: &mut impl DevicePtrMut<i64>,
    ) -> ReduceResult<Option<ReducePlan>> {
        require_len(op.name(), "value", 1, value.len())?;
        require_len(op.name(), "index", 1, index.len())?;
        self.arg_problem(op, AxisProblem::full(x.len()), x, value, index)
    }

    /// Along `axis`: for each output, the first index along the axis of the extreme, and its value.
    pub fn arg_reduce_axis<T: EwElement, O: ReduceOutput<T>>(
        &mut self,
        op: ArgOp,
        x: &impl DevicePtr<T>,
        shape: &[usize],
        axis: usize,
        values: &mut impl DevicePtrMut<O>,
        indices: &mut impl DevicePtrMut<i64>,
    ) -> ReduceResult<Option<ReducePlan>> {
        let problem = AxisProblem::along(op.name(), shape, axis)?;
        require_len(op.name(), "x", problem.elements(), x.len())?;
        require_len(op.name(), "values", problem.outputs(), values.len())?;
        require_len(op.name(), "indices", problem.outputs(), indices.len())?;
        self.arg_problem(op, problem, x, values, indices)
    }

    fn reduce_problem<T: EwElement, O: ReduceOutput<T>>(
        &mut self,
        op: ReduceOp,
        problem: AxisProblem,
        x: &impl DevicePtr<T>,
        out: &mut impl DevicePtrMut<O>,
    ) -> ReduceResult<Option<ReducePlan>> {
        if problem.len == 0 {
            let value = op.empty_value().ok_or(ReduceError::EmptyInput { op: op.name() })?;
            return fill(&self.gpu, out, problem.outputs(), value).map(|()| None);
        }
        if problem.outputs() == 0 {
            return Ok(None);
        }
        let (kind, post) = match op {
            ReduceOp::Sum => (Kind::Sum, POST_NONE),
            ReduceOp::Mean => (Kind::Sum, POST_MEAN),
            ReduceOp::Max => (Kind::Max, POST_NONE),
            ReduceOp::Min => (Kind::Min, POST_NONE),
            ReduceOp::SumOfSquares => (Kind::SumSquares, POST_NONE),
            ReduceOp::L2Norm => (Kind::SumSquares, POST_SQRT),
        };
        let stream = self.gpu.stream.clone();
        let (out_ptr, _out) = out.device_ptr_mut(&stream);
        self.launch::<T, O>(kind, post, problem, x, out_ptr, 0)
    }

    fn arg_problem<T: EwElement, O: ReduceOutput<T>>(
        &mut self,
        op: ArgOp,
        problem: AxisProblem,
        x: &impl DevicePtr<T>,
        values: &mut impl DevicePtrMut<O>,
        indices: &mut impl DevicePtrMut<i64>,
    ) -> ReduceResult<Option<ReducePlan>> {
        if problem.len == 0 {
            return Err(ReduceError::EmptyInput { op: op.name() });
        }
        if problem.outputs() == 0 {
            return Ok(None);
        }
        let kind = match op {
            ArgOp::ArgMax => Kind::ArgMax,
            ArgOp::ArgMin => Kind::ArgMin,
        };
        let stream = self.gpu.stream.clone();
        let (values_ptr, _values) = values.device_ptr_mut(&stream);
        let (indices_ptr, _indices) = indices.device_ptr_mut(&stream);
        self.launch::<T, O>(kind, POST_NONE, problem, x, values_ptr, indices_ptr)
    }

    /// Plans, makes sure the scratch memory is there, and launches. `problem` has
    /// len >= 1 and at least one output; `x` holds exactly its elements.
    fn launch<T: EwElement, O: ReduceOutput<T>>(
        &mut self,
        kind: Kind,
        post: i32,
        problem: AxisProblem,
        x: &impl DevicePtr<T>,
        out_ptr: u64,
        index_ptr: u64,
    ) -> ReduceResult<Option<ReducePlan>> {
        let plan = self.plan::<T>(&problem)?;
        let stream = self.gpu.stream.clone();
        if plan.uses_partials() {
            let bytes = problem.outputs() * plan.splits * kind.accumulator_bytes();
            if self.partials.as_ref().is_none_or(|p| p.len() < bytes) {
                self.partials = Some(stream.alloc_zeros::<u8>(bytes).map_err(GpuError::from)?);
            }
        }
        if plan.uses_counters() && self.counters.as_ref().is_none_or(|c| c.len() < problem.outer) {
            self.counters = Some(stream.alloc_zeros::<u32>(problem.outer).map_err(GpuError::from)?);
        }
        let (x_ptr, _x) = x.device_ptr(&stream);
        let partials = self.partials.as_mut().filter(|_| plan.uses_partials()).map(|p| p.device_ptr_mut(&stream));
        let counters = self.counters.as_mut().filter(|_| plan.uses_counters()).map(|c| c.device_ptr_mut(&stream));
        let elem = T::DTYPE.size_bytes() as u64;
        let (layout, combine) = plan.codes();
        let params = ReduceParams {
            x: x_ptr,
            outer: problem.outer as i64,
            len: problem.len as i64,
            inner: problem.inner as i64,
            row_stride: problem.len as i64,
            out: out_ptr,
            out_index: index_ptr,
            partials: partials.as_ref().map_or(0, |(p, _)| *p),
            counters: counters.as_ref().map_or(0, |(c, _)| *c),
            splits: plan.splits as i32,
            layout,
            combine,
            post,
            out_f32: i32::from(O::DTYPE == DType::F32),
            vectorized: i32::from(
                x_ptr.is_multiple_of(VECTOR_BYTES as u64)
                    && (problem.inner as u64 * elem).is_multiple_of(VECTOR_BYTES as u64),
            ),
        };
        let launcher = launch::reduce_launcher(kind, T::DTYPE);
        // SAFETY: x holds outer * len * inner elements of T; out (and the index output for
        // arg kinds) hold outer * inner elements; partials and counters are sized for the
        // plan above; all on this stream's context.
        let code = unsafe { launcher(&params, stream.cu_stream() as launch::Stream) };
        check(code, || format!("reduce_{}_{} ({})", kind.name(), T::DTYPE, plan.variant.name()))?;
        Ok(Some(plan))
    }
}

/// Writes `value` (0 or NaN) to the first `n` elements of `out` (which holds at least `n`).
fn fill<O: EwElement>(gpu: &Gpu, out: &mut impl DevicePtrMut<O>, n: usize, value: f64) -> ReduceResult<()> {
    if n == 0 {
        return Ok(());
    }
    let bits = if value.is_nan() { O::DTYPE.nan_bits() } else { 0 };
    debug_assert!(value.is_nan() || value == 0.0, "only 0 and NaN are fill values");
    let (ptr, _sync) = out.device_ptr_mut(&gpu.stream);
    let stream = gpu.stream.cu_stream();
    // SAFETY: ptr addresses n elements of O on this context.
    let result = unsafe {
        match O::DTYPE.size_bytes() {
            4 => sys::cuMemsetD32Async(ptr, bits, n, stream),
            _ => sys::cuMemsetD16Async(ptr, bits as u16, n, stream),
        }
    };
    result.result().map_err(GpuError::from)?;
    Ok(())
}
