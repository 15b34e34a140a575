//! Softmax and log-softmax forward through cuDNN's legacy API, `cudnnSoftmaxForward` (its
//! ops sublibrary): the vendor baseline of the row-wise kernels in ckb-norm.
//!
//! The convolution baseline ([`super::cudnn`]) uses the graph API; this one stays on the
//! legacy call, which every cuDNN 9 has. The graph API's own softmax operation
//! (`CUDNN_BACKEND_OPERATION_SOFTMAX_DESCRIPTOR`) is in cudarc's cuDNN 9.21 bindings but
//! not in its 9.10 ones, so not every cuDNN 9 has it.
//!
//! A `rows x cols` matrix whose input rows lie `row_stride` elements apart is the NCHW
//! tensor (rows, cols, 1, 1) with strides (row_stride, 1, 1, 1); the output is dense. The
//! softmax runs over each row (`CUDNN_SOFTMAX_MODE_INSTANCE`), max-subtracted
//! (`CUDNN_SOFTMAX_ACCURATE`) or as log-softmax (`CUDNN_SOFTMAX_LOG`). Whether a type runs
//! is cuDNN's call: a refusal comes back as [`GpuError::Library`] from [`CudnnSoftmax::run`].

use std::marker::PhantomData;

use cudarc::cudnn::sys;
use cudarc::driver::{DevicePtr, DevicePtrMut};

use super::cudnn::{load_cudnn9, LIBRARY};
use super::{all_ok, created, library_error, to_i32, Owned};
use crate::element::{DType, Element};
use crate::error::{GpuError, GpuResult};
use crate::gpu::Gpu;

/// Every cuDNN function this module calls, checked once at load.
const SYMBOLS: &[&str] = &[
    "cudnnGetVersion",
    "cudnnOpsVersionCheck",
    "cudnnCreate",
    "cudnnDestroy",
    "cudnnSetStream",
    "cudnnCreateTensorDescriptor",
    "cudnnSetTensor4dDescriptorEx",
    "cudnnDestroyTensorDescriptor",
    "cudnnSoftmaxForward",
];

/// Softmax (or log-softmax) of one matrix shape, set up once; [`CudnnSoftmax::run`] launches.
pub struct CudnnSoftmax<T> {
    gpu: Gpu,
    rows: usize,
    cols: usize,
    row_stride: usize,
    algorithm: sys::cudnnSoftmaxAlgorithm_t,
    x_desc: Owned<sys::cudnnTensorDescriptor_t>,
    y_desc: Owned<sys::cudnnTensorDescriptor_t>,
    // Declared last: the descriptors above go first.
    handle: Owned<sys::cudnnHandle_t>,
    _element: PhantomData<T>,
}

impl<T: Element> CudnnSoftmax<T> {
    /// Loads cuDNN 9 (a typed [`GpuError::LibraryMissing`] when it or its ops sublibrary is
    /// absent), binds a handle to `gpu`'s stream and describes the matrix. `log` picks
    /// log-softmax.
    pub fn new(gpu: &Gpu, rows: usize, cols: usize, row_stride: usize, log: bool) -> GpuResult<CudnnSoftmax<T>> {
        let data_type = match T::DTYPE {
            DType::F32 => sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
            DType::F16 => sys::cudnnDataType_t::CUDNN_DATA_HALF,
            DType::BF16 => sys::cudnnDataType_t::CUDNN_DATA_BFLOAT16,
            other => {
                return Err(GpuError::Unsupported {
                    what: "cuDNN softmax baseline",
                    detail: format!("{other} tensors"),
                })
            }
        };
        if rows == 0 || cols == 0 || row_stride < cols {
            return Err(GpuError::InvalidShape {
                what: "cuDNN softmax",
                detail: format!("{rows} rows of {cols} elements, {row_stride} apart"),
            });
        }
        let int = |v: usize| to_i32("cuDNN's tensor descriptors", v);
        let [n, c, stride] = all_ok([rows, cols, row_stride].map(int))?;
        // The input spans (rows - 1) * row_stride + cols elements, which must fit an int too.
        int((rows - 1) * row_stride + cols)?;

        load_ops_library()?;
        gpu.ctx.bind_to_thread()?;
        let handle =
            created(LIBRARY, "cudnnCreate", sys::cudnnCreate, sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS, |h| {
                // SAFETY: created above and destroyed once, after the descriptors.
                let _ = unsafe { sys::cudnnDestroy(h) };
            })?;
        // SAFETY: valid handle and stream.
        unsafe { sys::cudnnSetStream(handle.raw, gpu.stream.cu_stream() as sys::cudaStream_t) }
            .result()
            .map_err(library_error(LIBRARY, "cudnnSetStream"))?;
        Ok(CudnnSoftmax {
            gpu: gpu.clone(),
            rows,
            cols,
            row_stride,
            algorithm: if log {
                sys::cudnnSoftmaxAlgorithm_t::CUDNN_SOFTMAX_LOG
            } else {
                sys::cudnnSoftmaxAlgorithm_t::CUDNN_SOFTMAX_ACCURATE
            },
            x_desc: rows_descriptor(data_type, n, c, stride)?,
            y_desc: rows_descriptor(data_type, n, c, c)?,
            handle,
            _element: PhantomData,
        })
    }

    /// `y = softmax(x)` (or log-softmax) along each row. Buffer lengths are checked before
    /// any CUDA call.
    pub fn run(&self, x: &impl DevicePtr<T>, y: &mut impl DevicePtrMut<T>) -> GpuResult<()> {
        let x_len = (self.rows - 1) * self.row_stride + self.cols;
        crate::gpu::require_len("cuDNN softmax x", x, x_len)?;
        crate::gpu::require_len("cuDNN softmax y", y, self.rows * self.cols)?;
        self.gpu.ctx.bind_to_thread()?;
        let stream = &self.gpu.stream;
        let (px, _rx) = x.device_ptr(stream);
        let (py, _ry) = y.device_ptr_mut(stream);
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the descriptors match the checked buffers; alpha and beta are floats, as
        // cuDNN takes for float, half and bfloat16 data.
        unsafe {
            sys::cudnnSoftmaxForward(
                self.handle.raw,
                self.algorithm,
                sys::cudnnSoftmaxMode_t::CUDNN_SOFTMAX_MODE_INSTANCE,
                (&alpha as *const f32).cast(),
                self.x_desc.raw,
                px as *const _,
                (&beta as *const f32).cast(),
                self.y_desc.raw,
                py as *mut _,
            )
        }
        .result()
        .map_err(library_error(LIBRARY, "cudnnSoftmaxForward"))
    }
}

/// Checks that cuDNN 9 and its ops sublibrary are there; calling into a missing library
/// through cudarc would panic.
fn load_ops_library() -> GpuResult<()> {
    load_cudnn9(SYMBOLS)?;
    // SAFETY: takes no arguments; loads the ops sublibrary and checks its version.
    unsafe { sys::cudnnOpsVersionCheck() }.result().map_err(|status| GpuError::LibraryMissing {
        library: LIBRARY,
        detail: format!("the ops sublibrary (libcudnn_ops) failed to load or match: {status:?}"),
    })
}

/// The NCHW tensor (n, c, 1, 1) with rows `row_stride` apart.
fn rows_descriptor(
    data_type: sys::cudnnDataType_t,
    n: i32,
    c: i32,
    row_stride: i32,
) -> GpuResult<Owned<sys::cudnnTensorDescriptor_t>> {
    let desc = created(
        LIBRARY,
        "cudnnCreateTensorDescriptor",
        sys::cudnnCreateTensorDescriptor,
        sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS,
        |d| {
            // SAFETY: created above and destroyed once.
            let _ = unsafe { sys::cudnnDestroyTensorDescriptor(d) };
        },
    )?;
    // SAFETY: valid descriptor; strides in elements, NCHW order.
    unsafe { sys::cudnnSetTensor4dDescriptorEx(desc.raw, data_type, n, c, 1, 1, row_stride, 1, 1, 1) }
        .result()
        .map_err(library_error(LIBRARY, "cudnnSetTensor4dDescriptorEx"))?;
    Ok(desc)
}
