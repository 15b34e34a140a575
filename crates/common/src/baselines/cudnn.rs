//! conv2d forward through cuDNN: the baseline for the convolution gates.
//!
//! Tensors are NHWC (input), KRSC (filters) and NHWK (output), densely packed, described
//! with cuDNN's `CUDNN_TENSOR_NHWC` format. f16 and bf16 run with fp32 accumulation
//! (cuDNN's PSEUDO_HALF / PSEUDO_BFLOAT16 configurations, tensor-core math); f32 runs in
//! full fp32 (`CUDNN_FMA_MATH`) or as TF32 ([`Fp32Math::Tf32`], `CUDNN_DEFAULT_MATH`).
//!
//! [`Cudnn::conv2d_forward`] sets up a problem once: descriptors, then
//! `cudnnFindConvolutionForwardAlgorithmEx`, which times every algorithm on the caller's
//! own buffers, then a workspace sized for the fastest. [`Conv2dForward::run`] only launches.
//! This is the legacy convolution API, which cuDNN 9 still ships in its cnn sublibrary.
//!
//! Set a problem up while no other thread keeps the GPU busy. Under CUDA's default lazy
//! module loading, cuDNN's kernels are loaded at their first launch, and loading waits for
//! the GPU's queue to drain. On the H100 (cuDNN 9.14, driver 580), searches that ran while
//! another thread's long kernels were in flight (a naive GEMM of 1531 x 1277 x 2049, a
//! cuBLASLt fp8 GEMM) failed intermittently: every algorithm that applies came back
//! `CUDNN_STATUS_EXECUTION_FAILED` or `CUDNN_STATUS_INTERNAL_ERROR`, and a later
//! `cudnnConvolutionForward` could fail the same way. Run alone, or with
//! `CUDA_MODULE_LOADING=EAGER`, every case passed. Such a failure comes back as
//! [`GpuError::Library`] with cuDNN's own reason; [`GpuError::Unsupported`] means that
//! cuDNN has no algorithm for the problem.

use std::marker::PhantomData;
use std::rc::Rc;

use cudarc::cudnn::sys;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};

use super::libraries::{ensure_loaded, VendorLibrary};
use super::spec::{ConvLens, ConvSpec, Fp32Math};
use super::{all_ok, created, library_error, require_symbols, to_i32, Owned};
use crate::element::{DType, Element};
use crate::error::{GpuError, GpuResult};
use crate::gpu::{device_address, Gpu};

/// The most workspace the algorithm search may offer an algorithm (FFT-based ones can ask
/// for several GiB; above this they are left out of the search).
pub const FIND_WORKSPACE_LIMIT: usize = 2 << 30;

/// The name errors about cuDNN carry.
pub(crate) const LIBRARY: &str = VendorLibrary::Cudnn.name();

/// cuDNN 9 loads, has `symbols`, and reports a 9.x version. Checked before any call:
/// calling into a missing library or symbol through cudarc panics.
pub(crate) fn load_cudnn9(symbols: &[&str]) -> GpuResult<()> {
    // Any cudarc call into a library it cannot load panics; this is a typed error instead.
    ensure_loaded(VendorLibrary::Cudnn)?;
    // SAFETY: the library is present; looking names up calls nothing.
    require_symbols(LIBRARY, symbols, |name| unsafe { sys::culib().get::<unsafe extern "C" fn()>(name).is_ok() })?;
    // SAFETY: takes no arguments.
    let version = unsafe { sys::cudnnGetVersion() };
    if version / 10_000 != 9 {
        return Err(GpuError::LibraryMissing {
            library: LIBRARY,
            detail: format!("found cuDNN version code {version}; these bindings are for cuDNN 9.x"),
        });
    }
    Ok(())
}

const SYMBOLS: &[&str] = &[
    "cudnnGetVersion",
    "cudnnCnnVersionCheck",
    "cudnnCreate",
    "cudnnDestroy",
    "cudnnSetStream",
    "cudnnCreateTensorDescriptor",
    "cudnnSetTensor4dDescriptor",
    "cudnnDestroyTensorDescriptor",
    "cudnnCreateFilterDescriptor",
    "cudnnSetFilter4dDescriptor",
    "cudnnDestroyFilterDescriptor",
    "cudnnCreateConvolutionDescriptor",
    "cudnnSetConvolution2dDescriptor",
    "cudnnSetConvolutionGroupCount",
    "cudnnSetConvolutionMathType",
    "cudnnDestroyConvolutionDescriptor",
    "cudnnGetConvolution2dForwardOutputDim",
    "cudnnGetConvolutionForwardWorkspaceSize",
    "cudnnFindConvolutionForwardAlgorithmEx",
    "cudnnConvolutionForward",
    "cudnnGetLastErrorString",
];

const ALGORITHM_COUNT: usize = sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_COUNT as usize;

/// A cuDNN handle bound to one [`Gpu`]'s stream. Not `Send`, as cuDNN handles are per thread.
pub struct Cudnn {
    gpu: Gpu,
    handle: Rc<Owned<sys::cudnnHandle_t>>,
}

/// What the algorithm search chose.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConvAlgorithm {
    /// cuDNN's name, e.g. `CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM`.
    pub name: String,
    /// cuDNN's math type for it, e.g. `CUDNN_TENSOR_OP_MATH`.
    pub math: String,
    pub workspace_bytes: usize,
    /// Its time in the search, as cuDNN measured it.
    pub search_ms: f32,
}

/// One conv2d forward problem, set up once: descriptors, the fastest algorithm and its
/// workspace. [`Conv2dForward::run`] only launches.
pub struct Conv2dForward<T> {
    gpu: Gpu,
    spec: ConvSpec,
    lens: ConvLens,
    algo: sys::cudnnConvolutionFwdAlgo_t,
    algorithm: ConvAlgorithm,
    workspace: Option<CudaSlice<u8>>,
    x_desc: Owned<sys::cudnnTensorDescriptor_t>,
    w_desc: Owned<sys::cudnnFilterDescriptor_t>,
    y_desc: Owned<sys::cudnnTensorDescriptor_t>,
    conv_desc: Owned<sys::cudnnConvolutionDescriptor_t>,
    // Declared last: the descriptors above go first.
    handle: Rc<Owned<sys::cudnnHandle_t>>,
    _element: PhantomData<T>,
}

impl Cudnn {
    /// Loads cuDNN 9 (a typed [`GpuError::LibraryMissing`] when it, or its convolution
    /// sublibrary, is not installed) and binds a handle to `gpu`'s stream.
    pub fn new(gpu: &Gpu) -> GpuResult<Cudnn> {
        load_cudnn9(SYMBOLS)?;
        // SAFETY: takes no arguments; loads the cnn sublibrary and checks its version.
        unsafe { sys::cudnnCnnVersionCheck() }.result().map_err(|status| GpuError::LibraryMissing {
            library: LIBRARY,
            detail: format!("the convolution sublibrary (libcudnn_cnn) failed to load or match: {status:?}"),
        })?;
        gpu.ctx.bind_to_thread()?;
        let handle = cudnn_object("cudnnCreate", sys::cudnnCreate, |h| {
            // SAFETY: created by cudnn_object and destroyed once, after every descriptor that uses it.
            let _ = unsafe { sys::cudnnDestroy(h) };
        })?;
        // SAFETY: valid handle and stream.
        unsafe { sys::cudnnSetStream(handle.raw, gpu.stream.cu_stream() as sys::cudaStream_t) }
            .result()
            .map_err(library_error("cuDNN", "cudnnSetStream"))?;
        Ok(Cudnn { gpu: gpu.clone(), handle: Rc::new(handle) })
    }

    /// Sets up `spec` and searches for its fastest algorithm by running each on `x`, `w`
    /// and `y` (so `y` is overwritten). Pass the buffers the timed runs will use: cuDNN's
    /// choice then reflects real data.
    pub fn conv2d_forward<T: Element>(
        &self,
        spec: &ConvSpec,
        x: &impl DevicePtr<T>,
        w: &impl DevicePtr<T>,
        y: &mut impl DevicePtrMut<T>,
    ) -> GpuResult<Conv2dForward<T>> {
        let lens = spec.validate(x.len(), w.len(), y.len())?;
        let data_type = cudnn_data_type(T::DTYPE)?;
        let math = match (T::DTYPE, spec.fp32_math) {
            (DType::F32, Fp32Math::Ieee) => sys::cudnnMathType_t::CUDNN_FMA_MATH,
            (DType::F32, Fp32Math::Tf32) => sys::cudnnMathType_t::CUDNN_DEFAULT_MATH,
            _ => sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
        };
        let int = |v: usize| to_i32("cuDNN's legacy convolution API", v);
        // Descriptors take ints, and the batch stride of each tensor must fit in one too.
        all_ok([lens.x, lens.w, lens.y].map(int))?;
        let [n, h, w_in, c, k, r, s, c_per_group, p, q] = all_ok(
            [spec.n, spec.h, spec.w, spec.c, spec.k, spec.r, spec.s, spec.channels_per_group(), lens.p, lens.q]
                .map(int),
        )?;
        let [pad_h, pad_w, stride_h, stride_w, dil_h, dil_w, groups] = all_ok(
            [spec.pad[0], spec.pad[1], spec.stride[0], spec.stride[1], spec.dilation[0], spec.dilation[1], spec.groups]
                .map(int),
        )?;

        self.gpu.ctx.bind_to_thread()?;
        let nhwc = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC;
        let x_desc = tensor_descriptor(nhwc, data_type, [n, c, h, w_in])?;
        let y_desc = tensor_descriptor(nhwc, data_type, [n, k, p, q])?;

        let w_desc = cudnn_object("cudnnCreateFilterDescriptor", sys::cudnnCreateFilterDescriptor, |d| {
            // SAFETY: created by cudnn_object and destroyed once.
            let _ = unsafe { sys::cudnnDestroyFilterDescriptor(d) };
        })?;
        // SAFETY: valid descriptor; NHWC filters are KRSC.
        unsafe { sys::cudnnSetFilter4dDescriptor(w_desc.raw, data_type, nhwc, k, c_per_group, r, s) }
            .result()
            .map_err(library_error("cuDNN", "cudnnSetFilter4dDescriptor"))?;

        let conv_desc = cudnn_object("cudnnCreateConvolutionDescriptor", sys::cudnnCreateConvolutionDescriptor, |d| {
            // SAFETY: created by cudnn_object and destroyed once.
            let _ = unsafe { sys::cudnnDestroyConvolutionDescriptor(d) };
        })?;
        // SAFETY: valid descriptor. Float compute: fp32 accumulation for every input type.
        unsafe {
            sys::cudnnSetConvolution2dDescriptor(
                conv_desc.raw,
                pad_h,
                pad_w,
                stride_h,
                stride_w,
                dil_h,
                dil_w,
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
            )
        }
        .result()
        .map_err(library_error("cuDNN", "cudnnSetConvolution2dDescriptor"))?;
        // SAFETY: valid descriptor.
        unsafe { sys::cudnnSetConvolutionGroupCount(conv_desc.raw, groups) }
            .result()
            .map_err(library_error("cuDNN", "cudnnSetConvolutionGroupCount"))?;
        set_math(&conv_desc, math)?;

        // cuDNN's idea of the output must match ours, or the buffers are sized wrongly.
        let mut dims = [0i32; 4];
        // SAFETY: valid descriptors; four ints written.
        unsafe {
            sys::cudnnGetConvolution2dForwardOutputDim(
                conv_desc.raw,
                x_desc.raw,
                w_desc.raw,
                &mut dims[0],
                &mut dims[1],
                &mut dims[2],
                &mut dims[3],
            )
        }
        .result()
        .map_err(library_error("cuDNN", "cudnnGetConvolution2dForwardOutputDim"))?;
        if dims != [n, k, p, q] {
            return Err(GpuError::Library {
                library: "cuDNN",
                detail: format!("output is {dims:?} (NKPQ) in cuDNN but {:?} in the spec", [n, k, p, q]),
            });
        }

        let mut plan = Conv2dForward {
            gpu: self.gpu.clone(),
            spec: *spec,
            lens,
            algo: sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
            algorithm: ConvAlgorithm { name: String::new(), math: String::new(), workspace_bytes: 0, search_ms: 0.0 },
            workspace: None,
            x_desc,
            w_desc,
            y_desc,
            conv_desc,
            handle: self.handle.clone(),
            _element: PhantomData,
        };
        plan.find_fastest(x, w, y)?;
        Ok(plan)
    }
}

impl<T: Element> Conv2dForward<T> {
    /// Times every algorithm on the given buffers, keeps the fastest that succeeded, and
    /// allocates its workspace.
    fn find_fastest(
        &mut self,
        x: &impl DevicePtr<T>,
        w: &impl DevicePtr<T>,
        y: &mut impl DevicePtrMut<T>,
    ) -> GpuResult<()> {
        let search_workspace_bytes = self.search_workspace_bytes()?;
        let search_workspace = match search_workspace_bytes {
            0 => None,
            bytes => Some(self.gpu.stream.alloc_zeros::<u8>(bytes)?),
        };
        let stream = &self.gpu.stream;
        let search_workspace_ptr = search_workspace.as_ref().map_or(0, |ws| device_address(ws, stream));
        let (px, _rx) = x.device_ptr(stream);
        let (pw, _rw) = w.device_ptr(stream);
        let (py, _ry) = y.device_ptr_mut(stream);
        // SAFETY: all-zero is a valid value of every field (algo 0, status SUCCESS, ...).
        let mut results: [sys::cudnnConvolutionFwdAlgoPerf_t; ALGORITHM_COUNT] = unsafe { std::mem::zeroed() };
        let mut returned = 0;
        // SAFETY: descriptors match the validated buffers; room for ALGORITHM_COUNT results.
        unsafe {
            sys::cudnnFindConvolutionForwardAlgorithmEx(
                self.handle.raw,
                self.x_desc.raw,
                px as *const _,
                self.w_desc.raw,
                pw as *const _,
                self.conv_desc.raw,
                self.y_desc.raw,
                py as *mut _,
                ALGORITHM_COUNT as i32,
                &mut returned,
                results.as_mut_ptr(),
                search_workspace_ptr as *mut _,
                search_workspace_bytes,
            )
        }
        .result()
        .map_err(library_error("cuDNN", "cudnnFindConvolutionForwardAlgorithmEx"))?;
        drop(search_workspace);

        let returned = &results[..(returned.max(0) as usize).min(ALGORITHM_COUNT)];
        // Sorted fastest first.
        let Some(best) = returned
            .iter()
            .find(|r| r.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS && r.memory <= search_workspace_bytes)
        else {
            return Err(self.search_failure(returned));
        };
        // The search may pick a different math type than we set (e.g. tensor ops with conversion).
        set_math(&self.conv_desc, best.mathType)?;
        self.algo = best.algo;
        self.algorithm = ConvAlgorithm {
            name: format!("{:?}", best.algo),
            math: format!("{:?}", best.mathType),
            workspace_bytes: best.memory,
            search_ms: best.time,
        };
        self.workspace = match best.memory {
            0 => None,
            bytes => Some(self.gpu.stream.alloc_zeros::<u8>(bytes)?),
        };
        tracing::debug!(spec = ?self.spec, dtype = %T::DTYPE, algorithm = ?self.algorithm, "cuDNN conv2d forward algorithm");
        Ok(())
    }

    /// The error for a search in which no algorithm ran: [`GpuError::Unsupported`] when every
    /// algorithm was refused as unsupported, otherwise [`GpuError::Library`] with the statuses
    /// and cuDNN's reason (an algorithm that applies failed to execute; see the module docs).
    fn search_failure(&self, returned: &[sys::cudnnConvolutionFwdAlgoPerf_t]) -> GpuError {
        let statuses: Vec<_> = returned.iter().map(|r| (r.algo, r.status)).collect();
        if returned.iter().all(|r| is_not_supported(r.status)) {
            return GpuError::Unsupported {
                what: "cuDNN conv2d forward",
                detail: format!("{:?} in {}: no algorithm applies ({statuses:?})", self.spec, T::DTYPE),
            };
        }
        GpuError::Library {
            library: "cuDNN",
            detail: format!(
                "cudnnFindConvolutionForwardAlgorithmEx: no algorithm ran for {:?} in {} ({statuses:?}); \
                 cuDNN's last error: {:?}. An algorithm that applies failed to execute: if other \
                 threads had kernels in flight, set the problem up while the GPU is otherwise idle, \
                 or load modules eagerly (CUDA_MODULE_LOADING=EAGER)",
                self.spec,
                T::DTYPE,
                last_error_string(),
            ),
        }
    }

    /// The largest workspace any algorithm asks for, capped by [`FIND_WORKSPACE_LIMIT`] and
    /// a quarter of free memory.
    fn search_workspace_bytes(&self) -> GpuResult<usize> {
        let (free, _total) = cudarc::driver::result::mem_get_info()?;
        let limit = FIND_WORKSPACE_LIMIT.min(free / 4);
        let mut largest = 0;
        for index in 0..ALGORITHM_COUNT as u32 {
            let Some(algo) = forward_algorithm(index) else { continue };
            let mut bytes = 0usize;
            // SAFETY: valid descriptors; one size written. Algorithms that do not apply fail and are skipped.
            let status = unsafe {
                sys::cudnnGetConvolutionForwardWorkspaceSize(
                    self.handle.raw,
                    self.x_desc.raw,
                    self.w_desc.raw,
                    self.conv_desc.raw,
                    self.y_desc.raw,
                    algo,
                    &mut bytes,
                )
            };
            if status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS && bytes <= limit {
                largest = largest.max(bytes);
            }
        }
        Ok(largest)
    }

    /// `y = conv2d(x, w)` with the algorithm found at setup. Buffer lengths are checked
    /// before any CUDA call.
    pub fn run(&self, x: &impl DevicePtr<T>, w: &impl DevicePtr<T>, y: &mut impl DevicePtrMut<T>) -> GpuResult<()> {
        self.spec.validate(x.len(), w.len(), y.len())?;
        self.gpu.ctx.bind_to_thread()?;
        let stream = &self.gpu.stream;
        let (px, _rx) = x.device_ptr(stream);
        let (pw, _rw) = w.device_ptr(stream);
        let (py, _ry) = y.device_ptr_mut(stream);
        let (workspace, _rws) = match &self.workspace {
            Some(ws) => {
                let (ptr, record) = ws.device_ptr(stream);
                (ptr, Some(record))
            }
            None => (0, None),
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: descriptors match the validated buffers; alpha and beta are floats, as
        // cuDNN takes for float, half and bfloat16 data; the workspace is the algorithm's.
        unsafe {
            sys::cudnnConvolutionForward(
                self.handle.raw,
                (&alpha as *const f32).cast(),
                self.x_desc.raw,
                px as *const _,
                self.w_desc.raw,
                pw as *const _,
                self.conv_desc.raw,
                self.algo,
                workspace as *mut _,
                self.algorithm.workspace_bytes,
                (&beta as *const f32).cast(),
                self.y_desc.raw,
                py as *mut _,
            )
        }
        .result()
        .map_err(|status| GpuError::Library {
            library: "cuDNN",
            detail: format!(
                "cudnnConvolutionForward returned {status:?}; cuDNN's last error: {:?}",
                last_error_string()
            ),
        })
    }

    pub fn spec(&self) -> &ConvSpec {
        &self.spec
    }

    pub fn lens(&self) -> ConvLens {
        self.lens
    }

    /// The algorithm the search chose, its math type and workspace.
    pub fn algorithm(&self) -> &ConvAlgorithm {
        &self.algorithm
    }
}

fn cudnn_data_type(dtype: DType) -> GpuResult<sys::cudnnDataType_t> {
    match dtype {
        DType::F32 => Ok(sys::cudnnDataType_t::CUDNN_DATA_FLOAT),
        DType::F16 => Ok(sys::cudnnDataType_t::CUDNN_DATA_HALF),
        DType::BF16 => Ok(sys::cudnnDataType_t::CUDNN_DATA_BFLOAT16),
        other => Err(GpuError::Unsupported {
            what: "cuDNN conv2d baseline",
            detail: format!("{other} tensors (it takes f32, f16, bf16)"),
        }),
    }
}

fn forward_algorithm(index: u32) -> Option<sys::cudnnConvolutionFwdAlgo_t> {
    use sys::cudnnConvolutionFwdAlgo_t::*;
    [
        CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
    ]
    .get(index as usize)
    .copied()
}

fn tensor_descriptor(
    format: sys::cudnnTensorFormat_t,
    data_type: sys::cudnnDataType_t,
    [n, c, h, w]: [i32; 4],
) -> GpuResult<Owned<sys::cudnnTensorDescriptor_t>> {
    let desc = cudnn_object("cudnnCreateTensorDescriptor", sys::cudnnCreateTensorDescriptor, |d| {
        // SAFETY: created by cudnn_object and destroyed once.
        let _ = unsafe { sys::cudnnDestroyTensorDescriptor(d) };
    })?;
    // SAFETY: valid descriptor; dimensions are given in NCHW order whatever the format.
    unsafe { sys::cudnnSetTensor4dDescriptor(desc.raw, format, data_type, n, c, h, w) }
        .result()
        .map_err(library_error("cuDNN", "cudnnSetTensor4dDescriptor"))?;
    Ok(desc)
}

/// cuDNN 9's NOT_SUPPORTED family (3000-3999): the problem, not the run, is the reason.
fn is_not_supported(status: sys::cudnnStatus_t) -> bool {
    (status as u32) / 1000 == sys::cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED as u32 / 1000
}

/// cuDNN's description of the last error on this thread (`cudnnGetLastErrorString`), which
/// names the failing check or CUDA call behind a bare status.
fn last_error_string() -> String {
    let mut buffer = [0 as std::ffi::c_char; 1024];
    // SAFETY: writes at most `buffer.len() - 1` bytes, so the last one stays NUL.
    unsafe { sys::cudnnGetLastErrorString(buffer.as_mut_ptr(), buffer.len() - 1) };
    // SAFETY: NUL-terminated within the buffer (its last byte is never written).
    unsafe { std::ffi::CStr::from_ptr(buffer.as_ptr()) }.to_string_lossy().into_owned()
}

/// A cuDNN handle or descriptor, destroyed on drop.
fn cudnn_object<H: Copy>(
    call: &'static str,
    create: unsafe fn(*mut H) -> sys::cudnnStatus_t,
    destroy: fn(H),
) -> GpuResult<Owned<H>> {
    created("cuDNN", call, create, sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS, destroy)
}

fn set_math(conv_desc: &Owned<sys::cudnnConvolutionDescriptor_t>, math: sys::cudnnMathType_t) -> GpuResult<()> {
    // SAFETY: valid descriptor.
    unsafe { sys::cudnnSetConvolutionMathType(conv_desc.raw, math) }
        .result()
        .map_err(library_error("cuDNN", "cudnnSetConvolutionMathType"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_not_supported_family_means_unsupported() {
        use sys::cudnnStatus_t::*;
        assert!(is_not_supported(CUDNN_STATUS_NOT_SUPPORTED));
        assert!(is_not_supported(CUDNN_STATUS_NOT_SUPPORTED_SHAPE));
        for failed in
            [CUDNN_STATUS_SUCCESS, CUDNN_STATUS_INTERNAL_ERROR, CUDNN_STATUS_EXECUTION_FAILED, CUDNN_STATUS_BAD_PARAM]
        {
            assert!(!is_not_supported(failed), "{failed:?}");
        }
    }
}
