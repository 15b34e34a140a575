//! CUB reductions through the shim in `baselines/cub` (the `ckb-baselines-cuda` package): the
//! baseline for the reduction gates.
//!
//! Types and accumulation (see `baselines/cub/cub_reduce.cu`):
//! - sums accumulate in f32 for every input type, and write f32 or the input type. For f32
//!   this is `cub::DeviceReduce::Sum`; for f16/bf16 it is `DeviceReduce::Reduce` with
//!   `plus<float>`, which reads the same bytes as CUB's own Sum but does not lose precision,
//!   the fair comparison for our f32-accumulating kernels. [`Cub::sum_native`] is CUB's
//!   own Sum, which accumulates in the input type;
//! - max and min write the input type;
//! - argmax (f32) writes the value and an i64 index, the first index on ties;
//! - row sums are `DeviceSegmentedReduce` over the rows of a row-major matrix.
//!
//! [`Cub`] owns the temporary storage. CUB's size query runs once per (operation, shape);
//! the buffer only grows, so timed runs after the first allocate nothing.

use std::collections::HashMap;
use std::ffi::c_void;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};

use super::spec::{matrix_len, require_elements};
use super::to_i64;
use crate::element::{DType, Element};
use crate::error::{check_launch, GpuError, GpuResult};
use crate::gpu::Gpu;
use crate::layout::Layout;

type StreamPtr = *mut c_void;

// Null `temp` queries the bytes needed (see baselines/cub/cub_common.cuh).
extern_c_entries!(
    type ReduceEntry = (input: *const c_void, output: *mut c_void, n: i64, temp: *mut c_void, temp_bytes: *mut usize, stream: StreamPtr) -> i32;
    ckb_cub_sum_f32_f32,
    ckb_cub_sum_f16_f32,
    ckb_cub_sum_bf16_f32,
    ckb_cub_sum_f16_f16,
    ckb_cub_sum_bf16_bf16,
    ckb_cub_sum_native_f16,
    ckb_cub_sum_native_bf16,
    ckb_cub_max_f32,
    ckb_cub_max_f16,
    ckb_cub_max_bf16,
    ckb_cub_min_f32,
    ckb_cub_min_f16,
    ckb_cub_min_bf16,
);

extern_c_entries!(
    type RowSumEntry = (
        input: *const c_void,
        output: *mut c_void,
        rows: i64,
        cols: i64,
        ld: i64,
        temp: *mut c_void,
        temp_bytes: *mut usize,
        stream: StreamPtr,
    ) -> i32;
    ckb_cub_row_sum_f32_f32,
    ckb_cub_row_sum_f16_f32,
    ckb_cub_row_sum_bf16_f32,
    ckb_cub_row_sum_f16_f16,
    ckb_cub_row_sum_bf16_bf16,
);

extern "C" {
    fn ckb_cub_argmax_f32(
        input: *const c_void,
        max_out: *mut c_void,
        index_out: *mut i64,
        n: i64,
        temp: *mut c_void,
        temp_bytes: *mut usize,
        stream: StreamPtr,
    ) -> i32;
}

/// A device-wide reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ReduceOp {
    /// Accumulated in f32; output f32 or the input type.
    Sum,
    /// Output in the input type; an empty input is an error.
    Max,
    /// Output in the input type; an empty input is an error.
    Min,
}

/// The shim entry point for a full reduction, or a typed error for a type pair it lacks.
fn reduce_entry(op: ReduceOp, input: DType, output: DType) -> GpuResult<(&'static str, ReduceEntry)> {
    use DType::{BF16, F16, F32};
    let entry: (&'static str, ReduceEntry) = match (op, input, output) {
        (ReduceOp::Sum, F32, F32) => ("cub sum f32->f32", ckb_cub_sum_f32_f32),
        (ReduceOp::Sum, F16, F32) => ("cub sum f16->f32", ckb_cub_sum_f16_f32),
        (ReduceOp::Sum, BF16, F32) => ("cub sum bf16->f32", ckb_cub_sum_bf16_f32),
        (ReduceOp::Sum, F16, F16) => ("cub sum f16->f16", ckb_cub_sum_f16_f16),
        (ReduceOp::Sum, BF16, BF16) => ("cub sum bf16->bf16", ckb_cub_sum_bf16_bf16),
        (ReduceOp::Max, F32, F32) => ("cub max f32", ckb_cub_max_f32),
        (ReduceOp::Max, F16, F16) => ("cub max f16", ckb_cub_max_f16),
        (ReduceOp::Max, BF16, BF16) => ("cub max bf16", ckb_cub_max_bf16),
        (ReduceOp::Min, F32, F32) => ("cub min f32", ckb_cub_min_f32),
        (ReduceOp::Min, F16, F16) => ("cub min f16", ckb_cub_min_f16),
        (ReduceOp::Min, BF16, BF16) => ("cub min bf16", ckb_cub_min_bf16),
        _ => {
            return Err(GpuError::Unsupported {
                what: "the CUB reduce baseline",
                detail: format!(
                    "{op:?} of {input} into {output} (sums take f32/f16/bf16 into f32 or the input type; \
                     max and min write the input type)"
                ),
            })
        }
    };
    Ok(entry)
}

/// The shim entry point for a row sum, or a typed error for a type pair it lacks.
fn row_sum_entry(input: DType, output: DType) -> GpuResult<(&'static str, RowSumEntry)> {
    use DType::{BF16, F16, F32};
    let entry: (&'static str, RowSumEntry) = match (input, output) {
        (F32, F32) => ("cub row sum f32->f32", ckb_cub_row_sum_f32_f32),
        (F16, F32) => ("cub row sum f16->f32", ckb_cub_row_sum_f16_f32),
        (BF16, F32) => ("cub row sum bf16->f32", ckb_cub_row_sum_bf16_f32),
        (F16, F16) => ("cub row sum f16->f16", ckb_cub_row_sum_f16_f16),
        (BF16, BF16) => ("cub row sum bf16->bf16", ckb_cub_row_sum_bf16_bf16),
        _ => {
            return Err(GpuError::Unsupported {
                what: "the CUB row-sum baseline",
                detail: format!("{input} into {output} (it takes f32/f16/bf16 into f32 or the input type)"),
            })
        }
    };
    Ok(entry)
}

/// Checks a full reduction of `len_in` elements into an output of `len_out`.
pub fn check_reduce(op: ReduceOp, len_in: usize, len_out: usize) -> GpuResult<()> {
    if len_in == 0 && op != ReduceOp::Sum {
        return Err(GpuError::InvalidShape {
            what: "CUB reduce",
            detail: format!("{op:?} of an empty input is undefined"),
        });
    }
    require_elements("reduce output", len_out, 1)
}

/// Checks a row sum over a row-major `rows x cols` matrix with row stride `ld` and returns
/// the input elements it spans.
pub fn check_row_sum(rows: usize, cols: usize, ld: usize, len_in: usize, len_out: usize) -> GpuResult<usize> {
    if ld < cols {
        return Err(GpuError::InvalidShape {
            what: "CUB row sum",
            detail: format!("row stride {ld} is below the row length {cols}"),
        });
    }
    let needed = matrix_len("row-sum input", rows, cols, Layout::RowMajor, ld.max(1))?;
    require_elements("row-sum input", len_in, needed)?;
    require_elements("row-sum output", len_out, rows)?;
    Ok(needed)
}

/// Owns CUB's temporary storage and runs CUB reductions on one [`Gpu`]'s stream.
pub struct Cub {
    gpu: Gpu,
    temp: Option<CudaSlice<u8>>,
    /// Bytes CUB asked for, by (entry point, sizes): queried once per shape.
    temp_sizes: HashMap<(&'static str, [i64; 3]), usize>,
}

/// CUB's run mode needs a non-null pointer even when it needs no storage.
const MIN_TEMP_BYTES: usize = 256;

impl Cub {
    /// A CUB runner on `gpu`'s stream. It holds no temporary storage until the first call,
    /// and grows it when a shape needs more.
    pub fn new(gpu: &Gpu) -> Cub {
        Cub { gpu: gpu.clone(), temp: None, temp_sizes: HashMap::new() }
    }

    /// Bytes of temporary storage held now.
    pub fn temp_bytes(&self) -> usize {
        self.temp.as_ref().map_or(0, |t| t.len())
    }

    /// Reduces all of `input` into `output[0]` (see the module docs for types).
    pub fn reduce<TIn: Element, TOut: Element>(
        &mut self,
        op: ReduceOp,
        input: &impl DevicePtr<TIn>,
        output: &mut impl DevicePtrMut<TOut>,
    ) -> GpuResult<()> {
        let (name, entry) = reduce_entry(op, TIn::DTYPE, TOut::DTYPE)?;
        self.full_reduce(op, name, entry, input, output)
    }

    /// CUB's own `DeviceReduce::Sum`, which accumulates in the input type (less accurate
    /// than [`Cub::reduce`] for f16/bf16; for f32 the two are the same call).
    pub fn sum_native<T: Element>(
        &mut self,
        input: &impl DevicePtr<T>,
        output: &mut impl DevicePtrMut<T>,
    ) -> GpuResult<()> {
        let (name, entry): (&'static str, ReduceEntry) = match T::DTYPE {
            DType::F32 => ("cub sum f32->f32", ckb_cub_sum_f32_f32),
            DType::F16 => ("cub native sum f16", ckb_cub_sum_native_f16),
            DType::BF16 => ("cub native sum bf16", ckb_cub_sum_native_bf16),
            other => {
                return Err(GpuError::Unsupported {
                    what: "CUB's native sum baseline",
                    detail: format!("{other} (it takes f32, f16, bf16)"),
                })
            }
        };
        self.full_reduce(ReduceOp::Sum, name, entry, input, output)
    }

    /// The maximum of `input` into `value[0]` and its first index into `index[0]`.
    pub fn argmax_f32(
        &mut self,
        input: &impl DevicePtr<f32>,
        value: &mut impl DevicePtrMut<f32>,
        index: &mut impl DevicePtrMut<i64>,
    ) -> GpuResult<()> {
        check_reduce(ReduceOp::Max, input.len(), value.len())?;
        require_elements("argmax index output", index.len(), 1)?;
        let n = to_i64("argmax length", input.len())?;
        let stream = self.gpu.stream.clone();
        let (pi, _ri) = input.device_ptr(&stream);
        let (pv, _rv) = value.device_ptr_mut(&stream);
        let (px, _rx) = index.device_ptr_mut(&stream);
        let cu_stream = self.gpu.cu_stream();
        self.run("cub argmax f32", [n, 0, 0], |temp, bytes| {
            // SAFETY: pointers address n inputs and one output each on this context.
            unsafe {
                ckb_cub_argmax_f32(pi as *const c_void, pv as *mut c_void, px as *mut i64, n, temp, bytes, cu_stream)
            }
        })
    }

    /// `output[i]` = sum of the `cols` elements of row `i` of a row-major `rows x cols`
    /// matrix with row stride `ld` (in elements), accumulated in f32.
    pub fn row_sum<TIn: Element, TOut: Element>(
        &mut self,
        input: &impl DevicePtr<TIn>,
        rows: usize,
        cols: usize,
        ld: usize,
        output: &mut impl DevicePtrMut<TOut>,
    ) -> GpuResult<()> {
        let (name, entry) = row_sum_entry(TIn::DTYPE, TOut::DTYPE)?;
        check_row_sum(rows, cols, ld, input.len(), output.len())?;
        if rows == 0 {
            return Ok(());
        }
        let shape = [to_i64("rows", rows)?, to_i64("cols", cols)?, to_i64("ld", ld)?];
        let stream = self.gpu.stream.clone();
        let (pi, _ri) = input.device_ptr(&stream);
        let (po, _ro) = output.device_ptr_mut(&stream);
        let cu_stream = self.gpu.cu_stream();
        self.run(name, shape, |temp, bytes| {
            // SAFETY: checked above: the input spans the matrix and the output holds `rows`.
            unsafe {
                entry(pi as *const c_void, po as *mut c_void, shape[0], shape[1], shape[2], temp, bytes, cu_stream)
            }
        })
    }

    fn full_reduce<TIn: Element, TOut: Element>(
        &mut self,
        op: ReduceOp,
        name: &'static str,
        entry: ReduceEntry,
        input: &impl DevicePtr<TIn>,
        output: &mut impl DevicePtrMut<TOut>,
    ) -> GpuResult<()> {
        check_reduce(op, input.len(), output.len())?;
        let n = to_i64("reduce length", input.len())?;
        let stream = self.gpu.stream.clone();
        let (pi, _ri) = input.device_ptr(&stream);
        let (po, _ro) = output.device_ptr_mut(&stream);
        let cu_stream = self.gpu.cu_stream();
        self.run(name, [n, 0, 0], |temp, bytes| {
            // SAFETY: the input holds n elements and the output at least one, on this context.
            unsafe { entry(pi as *const c_void, po as *mut c_void, n, temp, bytes, cu_stream) }
        })
    }

    /// Queries CUB's temp size once per (entry, shape), grows the buffer if needed, and runs.
    fn run(
        &mut self,
        name: &'static str,
        shape: [i64; 3],
        launch: impl Fn(*mut c_void, *mut usize) -> i32,
    ) -> GpuResult<()> {
        self.gpu.ctx.bind_to_thread()?;
        let needed = match self.temp_sizes.get(&(name, shape)) {
            Some(&bytes) => bytes,
            None => {
                let mut bytes = 0usize;
                check_launch(name, launch(std::ptr::null_mut(), &mut bytes))?;
                self.temp_sizes.insert((name, shape), bytes);
                bytes
            }
        };
        if self.temp_bytes() < needed.max(MIN_TEMP_BYTES) {
            // Free first, so the peak is the new size only.
            self.temp = None;
            self.temp = Some(self.gpu.stream.alloc_zeros::<u8>(needed.max(MIN_TEMP_BYTES))?);
        }
        let stream = &self.gpu.stream;
        let Some(temp) = self.temp.as_mut() else {
            return Err(GpuError::Library { library: "CUB", detail: "temporary storage was not allocated".into() });
        };
        let mut bytes = temp.len();
        let (ptr, _rt) = temp.device_ptr_mut(stream);
        check_launch(name, launch(ptr as *mut c_void, &mut bytes))
    }
}
