//! GEMM through cuBLAS and cuBLASLt: the baseline every GEMM gate measures against.
//!
//! The project's convention ([`GemmSpec`]) is `C = alpha * A * B + beta * C` with A `m x k`,
//! B `k x n`, C `m x n`, each row- or column-major with its own leading dimension. cuBLAS is
//! column-major, so:
//! - a column-major C is computed directly, `C = op(A) op(B)`, where an operand stored
//!   row-major is the column-major storage of its transpose (op = T);
//! - a row-major C is the column-major `C^T`, computed as `C^T = B^T A^T`: the operands swap
//!   places and m and n swap.
//!
//! In both cases an operand stored in C's order is passed as is (N) and the other order is
//! transposed (T). See [`ColumnMajorGemm`].
//!
//! Types: `cublasGemmEx` with fp32 accumulation (`CUBLAS_COMPUTE_32F`) for f32 -> f32,
//! f16 -> f16/f32 and bf16 -> bf16/f32; f32 also as TF32 (`CUBLAS_COMPUTE_32F_FAST_TF32`,
//! [`Fp32Math::Tf32`]). fp8 (e4m3 x e4m3, per-tensor scales) runs through cuBLASLt,
//! which on Hopper runs fp8 only in its "TN" form: see [`check_fp8_form`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::mem::MaybeUninit;

use cudarc::cublas::sys as blas;
use cudarc::cublaslt::sys as lt;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use float8::F8E4M3;

use super::libraries::{ensure_loaded, VendorLibrary};
use super::spec::{Fp32Math, GemmSpec};
use super::{all_ok, created, library_error, require_symbols, to_i32, Owned};
use crate::element::{DType, Element};
use crate::error::{GpuError, GpuResult};
use crate::gpu::{device_address, require_aligned, Gpu};
use crate::layout::Layout;

/// cuBLAS's recommended workspace on Hopper; shared by cuBLAS and cuBLASLt.
pub const WORKSPACE_BYTES: usize = 32 << 20;

/// Every cuBLAS and cuBLASLt function this module calls, checked once at load.
const BLAS_SYMBOLS: &[&str] =
    &["cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2", "cublasSetWorkspace_v2", "cublasGemmEx"];
const LT_SYMBOLS: &[&str] = &[
    "cublasLtCreate",
    "cublasLtDestroy",
    "cublasLtMatmulDescCreate",
    "cublasLtMatmulDescDestroy",
    "cublasLtMatmulDescSetAttribute",
    "cublasLtMatrixLayoutCreate",
    "cublasLtMatrixLayoutDestroy",
    "cublasLtMatmulPreferenceCreate",
    "cublasLtMatmulPreferenceDestroy",
    "cublasLtMatmulPreferenceSetAttribute",
    "cublasLtMatmulAlgoGetHeuristic",
    "cublasLtMatmul",
];

/// The column-major cuBLAS call that computes a [`GemmSpec`]: `C' = op(first) op(second)`
/// with `C'` of `m x n` (this struct's m and n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ColumnMajorGemm {
    /// Row-major C, computed as `C^T = B^T A^T`: the first operand is B and m, n swap.
    pub swapped: bool,
    /// The first operand is stored in the other order than C, so cuBLAS reads it as T.
    pub transpose_first: bool,
    /// The second operand is stored in the other order than C, so cuBLAS reads it as T.
    pub transpose_second: bool,
    /// Rows of `C'`: the spec's m, or its n when swapped.
    pub m: usize,
    /// Columns of `C'`: the spec's n, or its m when swapped.
    pub n: usize,
    /// The inner dimension, the spec's k either way.
    pub k: usize,
    /// Leading dimension of the first operand (lda, or ldb when swapped).
    pub ld_first: usize,
    /// Leading dimension of the second operand (ldb, or lda when swapped).
    pub ld_second: usize,
    /// Leading dimension of C, as in the spec.
    pub ldc: usize,
}

impl ColumnMajorGemm {
    /// The call for `spec`, by the rules in the module docs.
    pub fn new(spec: &GemmSpec) -> ColumnMajorGemm {
        // An operand stored in C's order is used as is; the other order holds its transpose.
        let transposed = |layout: Layout| layout != spec.c_layout;
        match spec.c_layout {
            Layout::ColMajor => ColumnMajorGemm {
                swapped: false,
                transpose_first: transposed(spec.a_layout),
                transpose_second: transposed(spec.b_layout),
                m: spec.m,
                n: spec.n,
                k: spec.k,
                ld_first: spec.lda,
                ld_second: spec.ldb,
                ldc: spec.ldc,
            },
            Layout::RowMajor => ColumnMajorGemm {
                swapped: true,
                transpose_first: transposed(spec.b_layout),
                transpose_second: transposed(spec.a_layout),
                m: spec.n,
                n: spec.m,
                k: spec.k,
                ld_first: spec.ldb,
                ld_second: spec.lda,
                ldc: spec.ldc,
            },
        }
    }

    /// cuBLAS's "TN" form: first operand transposed, second not.
    pub fn is_tn(&self) -> bool {
        self.transpose_first && !self.transpose_second
    }

    /// (rows, cols) of the first and second operands as stored, column-major.
    fn stored_shapes(&self) -> [(usize, usize); 2] {
        let first = if self.transpose_first { (self.k, self.m) } else { (self.m, self.k) };
        let second = if self.transpose_second { (self.n, self.k) } else { (self.k, self.n) };
        [first, second]
    }

    /// The first and second device pointers, given A's and B's.
    fn order<P>(&self, a: P, b: P) -> (P, P) {
        if self.swapped {
            (b, a)
        } else {
            (a, b)
        }
    }
}

/// The types `cublasGemmEx` is called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CublasGemmTypes {
    /// The type of A and B.
    pub input: blas::cudaDataType,
    /// The type of C.
    pub output: blas::cudaDataType,
    /// The compute type: fp32 accumulation, with or without TF32 inputs.
    pub compute: blas::cublasComputeType_t,
}

/// The `cublasGemmEx` types for `input x input -> output`, or a typed error for pairs it
/// does not run (fp8 goes through [`Cublas::gemm_fp8`]).
pub fn cublas_gemm_types(input: DType, output: DType, fp32_math: Fp32Math) -> GpuResult<CublasGemmTypes> {
    use blas::cublasComputeType_t::{CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32};
    use blas::cudaDataType::{CUDA_R_16BF, CUDA_R_16F, CUDA_R_32F};
    let types = |input, output, compute| Ok(CublasGemmTypes { input, output, compute });
    match (input, output) {
        (DType::F32, DType::F32) => match fp32_math {
            Fp32Math::Ieee => types(CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F),
            Fp32Math::Tf32 => types(CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32),
        },
        (DType::F16, DType::F16) => types(CUDA_R_16F, CUDA_R_16F, CUBLAS_COMPUTE_32F),
        (DType::F16, DType::F32) => types(CUDA_R_16F, CUDA_R_32F, CUBLAS_COMPUTE_32F),
        (DType::BF16, DType::BF16) => types(CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F),
        (DType::BF16, DType::F32) => types(CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F),
        _ => Err(GpuError::Unsupported {
            what: "cublasGemmEx",
            detail: format!(
                "{input} inputs with {output} output (it runs f32->f32, f16->f16/f32, bf16->bf16/f32; \
                 e4m3 goes through Cublas::gemm_fp8)"
            ),
        }),
    }
}

/// Checks that a GEMM can run in fp8 on Hopper's cuBLASLt and returns its column-major form.
///
/// cuBLASLt documents these requirements for fp8 on Hopper: the "TN" form (first operand
/// transposed, second not), fp32 compute and scale types, and 16-byte aligned pointers and
/// leading dimensions. In this project's terms TN means A row-major and B column-major
/// (both k-contiguous), with C either row- or column-major. Other layouts get
/// [`GpuError::Unsupported`]; pre-transpose the operand instead.
pub fn check_fp8_form(spec: &GemmSpec, output: DType) -> GpuResult<ColumnMajorGemm> {
    const WHAT: &str = "cuBLASLt fp8 on Hopper";
    let call = ColumnMajorGemm::new(spec);
    if !call.is_tn() {
        return Err(GpuError::Unsupported {
            what: WHAT,
            detail: format!(
                "A {:?} x B {:?}: fp8 runs only in cuBLAS's TN form, which here means A row-major and \
                 B column-major (C either layout)",
                spec.a_layout, spec.b_layout
            ),
        });
    }
    // cuBLASLt's fp8 kernels also need every extent a multiple of 16 (seen on the H100:
    // 200 x 136 x 96 gave CUBLAS_STATUS_NOT_SUPPORTED at launch, after a heuristic was found).
    for (extent, value) in [("m", spec.m), ("n", spec.n), ("k", spec.k)] {
        if value % 16 != 0 {
            return Err(GpuError::Unsupported {
                what: WHAT,
                detail: format!("{extent} = {value}: fp8 needs m, n and k multiples of 16"),
            });
        }
    }
    let element_bytes = [("A", spec.lda, 1), ("B", spec.ldb, 1), ("C", spec.ldc, output.size_bytes())];
    for (operand, ld, bytes) in element_bytes {
        if (ld * bytes) % 16 != 0 {
            return Err(GpuError::Unsupported {
                what: WHAT,
                detail: format!(
                    "{operand}'s leading dimension {ld} ({} bytes): it must be a multiple of 16 bytes",
                    ld * bytes
                ),
            });
        }
    }
    Ok(call)
}

/// Per-tensor fp8 scales: `C = alpha * (scale_a * A)(scale_b * B) + beta * C`, computed
/// with fp32 accumulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fp8Scales {
    /// Scale of A.
    pub a: f32,
    /// Scale of B.
    pub b: f32,
    /// cuBLASLt's `FAST_ACCUM`: keep partial sums in the tensor cores' reduced-precision
    /// accumulator instead of promoting them to fp32 periodically. Faster, less accurate.
    pub fast_accum: bool,
}

impl Default for Fp8Scales {
    fn default() -> Self {
        Fp8Scales { a: 1.0, b: 1.0, fast_accum: false }
    }
}

/// A cuBLASLt fp8 matmul set up once per shape: descriptors and the heuristic's algorithm.
struct Fp8Plan {
    desc: Owned<lt::cublasLtMatmulDesc_t>,
    first: Owned<lt::cublasLtMatrixLayout_t>,
    second: Owned<lt::cublasLtMatrixLayout_t>,
    c: Owned<lt::cublasLtMatrixLayout_t>,
    algo: lt::cublasLtMatmulAlgo_t,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Fp8PlanKey {
    call: ColumnMajorGemm,
    output: DType,
    fast_accum: bool,
}

/// The alignment of each fp8 scale pointer handed to cuBLASLt: each scale sits in a slot of
/// its own, aligned as a fresh allocation is.
///
/// cuBLASLt's fp8 kernels reject scale pointers that are only 4-byte aligned: with A's scale
/// at `p` and B's at `p + 4` (two adjacent floats), cublasLtMatmul returned
/// CUBLAS_STATUS_NOT_SUPPORTED on the H100 (cuBLAS 13.1) for every shape, although
/// cublasLtMatmulAlgoGetHeuristic had returned an algorithm; the same call with the scales 16
/// bytes apart, or each in its own allocation, ran and matched the reference
/// (`crates/common/tools/baseline_probe.cu`, fp8 variants 0, 8 and 5).
pub const FP8_SCALE_ALIGN_BYTES: usize = 256;

/// The scales cuBLASLt reads from device memory, re-uploaded only when they change.
struct Fp8ScaleBuffer {
    device: CudaSlice<f32>,
    /// Indices into `device` of A's and B's scale, each [`FP8_SCALE_ALIGN_BYTES`]-aligned.
    slots: [usize; 2],
    /// Device addresses of A's and B's scale.
    addresses: [u64; 2],
    uploaded: Option<[f32; 2]>,
}

impl Fp8ScaleBuffer {
    fn new(gpu: &Gpu) -> GpuResult<Fp8ScaleBuffer> {
        const STRIDE: usize = FP8_SCALE_ALIGN_BYTES / std::mem::size_of::<f32>();
        // Room for two aligned slots wherever the allocation starts.
        let mut buffer =
            Fp8ScaleBuffer { device: gpu.zeros::<f32>(3 * STRIDE)?, slots: [0, 0], addresses: [0, 0], uploaded: None };
        let base = device_address(&buffer.device, &gpu.stream);
        let align = FP8_SCALE_ALIGN_BYTES as u64;
        let first = ((align - base % align) % align) as usize / std::mem::size_of::<f32>();
        buffer.slots = [first, first + STRIDE];
        buffer.addresses = buffer.slots.map(|slot| base + (slot * std::mem::size_of::<f32>()) as u64);
        for (operand, address) in ["A's fp8 scale", "B's fp8 scale"].into_iter().zip(buffer.addresses) {
            require_aligned(operand, address, FP8_SCALE_ALIGN_BYTES)?;
        }
        buffer.upload(&gpu.stream, [1.0, 1.0])?;
        Ok(buffer)
    }

    /// Writes `values` (A's, B's) to their slots unless they are there already. Stream-ordered
    /// after every matmul already queued with the old values.
    fn upload(&mut self, stream: &std::sync::Arc<cudarc::driver::CudaStream>, values: [f32; 2]) -> GpuResult<()> {
        if self.uploaded != Some(values) {
            let mut host = vec![0.0f32; self.device.len()];
            for (slot, value) in self.slots.into_iter().zip(values) {
                host[slot] = value;
            }
            stream.memcpy_htod(&host, &mut self.device)?;
            self.uploaded = Some(values);
        }
        Ok(())
    }
}

/// cuBLAS and cuBLASLt handles bound to one [`Gpu`]'s stream, with one workspace.
///
/// Not `Send`: create one per thread.
pub struct Cublas {
    gpu: Gpu,
    fp8_plans: RefCell<HashMap<Fp8PlanKey, Fp8Plan>>,
    fp8_scales: RefCell<Fp8ScaleBuffer>,
    blas: Owned<blas::cublasHandle_t>,
    lt: Owned<lt::cublasLtHandle_t>,
    // Declared last so it outlives the handles that point at it.
    workspace: CudaSlice<u8>,
}

impl Cublas {
    /// Loads cuBLAS and cuBLASLt (a typed [`GpuError::LibraryMissing`] when either is not
    /// installed) and binds both to `gpu`'s stream.
    pub fn new(gpu: &Gpu) -> GpuResult<Cublas> {
        // Any cudarc call into a library it cannot load panics; this is a typed error instead.
        ensure_loaded(VendorLibrary::CublasLt)?;
        ensure_loaded(VendorLibrary::Cublas)?;
        // SAFETY: the libraries are present; looking names up calls nothing.
        require_symbols("cuBLAS", BLAS_SYMBOLS, |name| unsafe {
            blas::culib().get::<unsafe extern "C" fn()>(name).is_ok()
        })?;
        // SAFETY: as above.
        require_symbols("cuBLASLt", LT_SYMBOLS, |name| unsafe {
            lt::culib().get::<unsafe extern "C" fn()>(name).is_ok()
        })?;
        gpu.ctx.bind_to_thread()?;
        let workspace = gpu.stream.alloc_zeros::<u8>(WORKSPACE_BYTES)?;
        let workspace_address = device_address(&workspace, &gpu.stream);
        let fp8_scales = Fp8ScaleBuffer::new(gpu)?;

        let handle = created(
            "cuBLAS",
            "cublasCreate",
            blas::cublasCreate_v2,
            blas::cublasStatus_t::CUBLAS_STATUS_SUCCESS,
            |h| {
                // SAFETY: created above and destroyed once.
                let _ = unsafe { blas::cublasDestroy_v2(h) };
            },
        )?;
        // SAFETY: valid handle and stream. The stream goes first: setting it resets the workspace.
        unsafe { blas::cublasSetStream_v2(handle.raw, gpu.stream.cu_stream() as blas::cudaStream_t) }
            .result()
            .map_err(library_error("cuBLAS", "cublasSetStream"))?;
        // SAFETY: the workspace lives as long as the handle (field order) and is used only on this stream.
        unsafe { blas::cublasSetWorkspace_v2(handle.raw, workspace_address as *mut c_void, WORKSPACE_BYTES) }
            .result()
            .map_err(library_error("cuBLAS", "cublasSetWorkspace"))?;

        let lt_handle = lt_object("cublasLtCreate", lt::cublasLtCreate, |h| {
            // SAFETY: created above and destroyed once.
            let _ = unsafe { lt::cublasLtDestroy(h) };
        })?;

        Ok(Cublas {
            gpu: gpu.clone(),
            fp8_plans: RefCell::new(HashMap::new()),
            fp8_scales: RefCell::new(fp8_scales),
            blas: handle,
            lt: lt_handle,
            workspace,
        })
    }

    /// `c = alpha * a * b + beta * c` through `cublasGemmEx` (types: [`cublas_gemm_types`]).
    /// Shapes, leading dimensions and buffer lengths are checked before any CUDA call.
    pub fn gemm<TIn: Element, TOut: Element>(
        &self,
        spec: &GemmSpec,
        a: &impl DevicePtr<TIn>,
        b: &impl DevicePtr<TIn>,
        c: &mut impl DevicePtrMut<TOut>,
    ) -> GpuResult<()> {
        let types = cublas_gemm_types(TIn::DTYPE, TOut::DTYPE, spec.fp32_math)?;
        spec.validate(a.len(), b.len(), c.len())?;
        let call = ColumnMajorGemm::new(spec);
        let [m, n, k, ld_first, ld_second, ldc] = int_extents("cublasGemmEx", &call)?;
        self.gpu.ctx.bind_to_thread()?;
        let stream = &self.gpu.stream;
        let (pa, _ra) = a.device_ptr(stream);
        let (pb, _rb) = b.device_ptr(stream);
        let (pc, _rc) = c.device_ptr_mut(stream);
        let (first, second) = call.order(pa, pb);
        let (alpha, beta) = (spec.alpha, spec.beta);
        // SAFETY: the buffers hold the validated extents on this context; alpha and beta are
        // host f32 scalars, as CUBLAS_COMPUTE_32F with the default host pointer mode expects.
        unsafe {
            blas::cublasGemmEx(
                self.blas.raw,
                blas_op(call.transpose_first),
                blas_op(call.transpose_second),
                m,
                n,
                k,
                (&alpha as *const f32).cast(),
                first as *const c_void,
                types.input,
                ld_first,
                second as *const c_void,
                types.input,
                ld_second,
                (&beta as *const f32).cast(),
                pc as *mut c_void,
                types.output,
                ldc,
                types.compute,
                blas::cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
            )
        }
        .result()
        .map_err(library_error("cuBLAS", "cublasGemmEx"))
    }

    /// fp8 GEMM through cuBLASLt: e4m3 A and B with per-tensor scales, fp32 accumulation,
    /// bf16 output (f16 and f32 are passed on to cuBLASLt as well, untested).
    /// Only A row-major x B column-major runs on Hopper ([`check_fp8_form`]); pointers must
    /// be 16-byte aligned (16-byte offsets ran on the H100). The scales live in a device
    /// buffer of ours, each at its own [`FP8_SCALE_ALIGN_BYTES`]-aligned address. The matmul
    /// descriptors and algorithm are chosen once per shape.
    pub fn gemm_fp8<TOut: Element>(
        &self,
        spec: &GemmSpec,
        scales: Fp8Scales,
        a: &impl DevicePtr<F8E4M3>,
        b: &impl DevicePtr<F8E4M3>,
        c: &mut impl DevicePtrMut<TOut>,
    ) -> GpuResult<()> {
        let output = lt_output_type(TOut::DTYPE)?;
        spec.validate(a.len(), b.len(), c.len())?;
        let call = check_fp8_form(spec, TOut::DTYPE)?;
        int_extents("cublasLtMatmul", &call)?;
        self.gpu.ctx.bind_to_thread()?;
        let stream = &self.gpu.stream;
        let (pa, _ra) = a.device_ptr(stream);
        let (pb, _rb) = b.device_ptr(stream);
        let (pc, _rc) = c.device_ptr_mut(stream);
        require_aligned("A", pa, 16)?;
        require_aligned("B", pb, 16)?;
        require_aligned("C", pc, 16)?;
        self.upload_fp8_scales(scales)?;

        let key = Fp8PlanKey { call, output: TOut::DTYPE, fast_accum: scales.fast_accum };
        let mut plans = self.fp8_plans.borrow_mut();
        let plan = match plans.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(self.fp8_plan(&call, output, scales.fast_accum)?)
            }
        };
        let (first, second) = call.order(pa, pb);
        let (workspace, _rw) = self.workspace.device_ptr(stream);
        let (alpha, beta) = (spec.alpha, spec.beta);
        // SAFETY: the plan's layouts describe the validated buffers; C is both input and
        // output (in place, same layout), which cuBLASLt allows; the workspace is ours.
        unsafe {
            lt::cublasLtMatmul(
                self.lt.raw,
                plan.desc.raw,
                (&alpha as *const f32).cast(),
                first as *const c_void,
                plan.first.raw,
                second as *const c_void,
                plan.second.raw,
                (&beta as *const f32).cast(),
                pc as *const c_void,
                plan.c.raw,
                pc as *mut c_void,
                plan.c.raw,
                &plan.algo,
                workspace as *mut c_void,
                WORKSPACE_BYTES,
                stream.cu_stream() as lt::cudaStream_t,
            )
        }
        .result()
        .map_err(library_error("cuBLASLt", "cublasLtMatmul"))
    }

    fn upload_fp8_scales(&self, scales: Fp8Scales) -> GpuResult<()> {
        self.fp8_scales.borrow_mut().upload(&self.gpu.stream, [scales.a, scales.b])
    }

    fn fp8_plan(&self, call: &ColumnMajorGemm, output: lt::cudaDataType, fast_accum: bool) -> GpuResult<Fp8Plan> {
        use lt::cublasLtMatmulDescAttributes_t as Attr;
        // fp8 needs fp32 compute and fp32 scale types.
        let create = |d| {
            // SAFETY: writes a descriptor into `d` on success.
            unsafe {
                lt::cublasLtMatmulDescCreate(
                    d,
                    lt::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    lt::cudaDataType::CUDA_R_32F,
                )
            }
        };
        let desc = lt_object("cublasLtMatmulDescCreate", create, |d| {
            // SAFETY: created above and destroyed once.
            let _ = unsafe { lt::cublasLtMatmulDescDestroy(d) };
        })?;
        let [a_scale, b_scale] = self.fp8_scales.borrow().addresses;
        set_desc_attribute(&desc, Attr::CUBLASLT_MATMUL_DESC_TRANSA, &(call.transpose_first as i32))?;
        set_desc_attribute(&desc, Attr::CUBLASLT_MATMUL_DESC_TRANSB, &(call.transpose_second as i32))?;
        // The first operand is B when the call is swapped, so its scale is b's.
        let (first_scale, second_scale) = call.order(a_scale, b_scale);
        set_desc_attribute(&desc, Attr::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &first_scale)?;
        set_desc_attribute(&desc, Attr::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &second_scale)?;
        set_desc_attribute(&desc, Attr::CUBLASLT_MATMUL_DESC_FAST_ACCUM, &(fast_accum as i8))?;

        let [first_shape, second_shape] = call.stored_shapes();
        let e4m3 = lt::cudaDataType::CUDA_R_8F_E4M3;
        let first = matrix_layout(e4m3, first_shape, call.ld_first)?;
        let second = matrix_layout(e4m3, second_shape, call.ld_second)?;
        let c = matrix_layout(output, (call.m, call.n), call.ldc)?;

        let preference = lt_object("cublasLtMatmulPreferenceCreate", lt::cublasLtMatmulPreferenceCreate, |p| {
            // SAFETY: created above and destroyed once.
            let _ = unsafe { lt::cublasLtMatmulPreferenceDestroy(p) };
        })?;
        let max_workspace = WORKSPACE_BYTES as u64;
        // SAFETY: the attribute is a uint64_t, passed by address with its size.
        unsafe {
            lt::cublasLtMatmulPreferenceSetAttribute(
                preference.raw,
                lt::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&max_workspace as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        }
        .result()
        .map_err(library_error("cuBLASLt", "cublasLtMatmulPreferenceSetAttribute"))?;

        let mut heuristic = MaybeUninit::<lt::cublasLtMatmulHeuristicResult_t>::zeroed();
        let mut found = 0;
        // SAFETY: every descriptor is live; room for the one result requested.
        let status = unsafe {
            lt::cublasLtMatmulAlgoGetHeuristic(
                self.lt.raw,
                desc.raw,
                first.raw,
                second.raw,
                c.raw,
                c.raw,
                preference.raw,
                1,
                heuristic.as_mut_ptr(),
                &mut found,
            )
        };
        let no_algorithm = || GpuError::Unsupported {
            what: "cuBLASLt fp8 on Hopper",
            detail: format!("this problem: no algorithm found for {call:?} with {output:?} output ({status:?})"),
        };
        if status == lt::cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED || found == 0 {
            return Err(no_algorithm());
        }
        status.result().map_err(library_error("cuBLASLt", "cublasLtMatmulAlgoGetHeuristic"))?;
        // SAFETY: cuBLASLt filled the first result (found >= 1); zeroed memory is a valid value anyway.
        let heuristic = unsafe { heuristic.assume_init() };
        if heuristic.state != lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(no_algorithm());
        }
        Ok(Fp8Plan { desc, first, second, c, algo: heuristic.algo })
    }
}

fn blas_op(transpose: bool) -> blas::cublasOperation_t {
    if transpose {
        blas::cublasOperation_t::CUBLAS_OP_T
    } else {
        blas::cublasOperation_t::CUBLAS_OP_N
    }
}

/// m, n, k and the leading dimensions as the ints cuBLAS takes.
fn int_extents(what: &'static str, call: &ColumnMajorGemm) -> GpuResult<[i32; 6]> {
    all_ok([call.m, call.n, call.k, call.ld_first, call.ld_second, call.ldc].map(|v| to_i32(what, v)))
}

fn lt_output_type(output: DType) -> GpuResult<lt::cudaDataType> {
    match output {
        DType::BF16 => Ok(lt::cudaDataType::CUDA_R_16BF),
        DType::F16 => Ok(lt::cudaDataType::CUDA_R_16F),
        DType::F32 => Ok(lt::cudaDataType::CUDA_R_32F),
        other => Err(GpuError::Unsupported {
            what: "Cublas::gemm_fp8",
            detail: format!("{other} output (it writes bf16, f16 or f32; fp8 output would need output scaling)"),
        }),
    }
}

/// A cuBLASLt handle or descriptor, destroyed on drop.
fn lt_object<H: Copy>(
    call: &'static str,
    create: unsafe fn(*mut H) -> lt::cublasStatus_t,
    destroy: fn(H),
) -> GpuResult<Owned<H>> {
    created("cuBLASLt", call, create, lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS, destroy)
}

fn set_desc_attribute<T>(
    desc: &Owned<lt::cublasLtMatmulDesc_t>,
    attribute: lt::cublasLtMatmulDescAttributes_t,
    value: &T,
) -> GpuResult<()> {
    // SAFETY: `value` is the attribute's documented type, passed by address with its size.
    unsafe {
        lt::cublasLtMatmulDescSetAttribute(desc.raw, attribute, (value as *const T).cast(), std::mem::size_of::<T>())
    }
    .result()
    .map_err(library_error("cuBLASLt", "cublasLtMatmulDescSetAttribute"))
}

fn matrix_layout(
    data_type: lt::cudaDataType,
    (rows, cols): (usize, usize),
    ld: usize,
) -> GpuResult<Owned<lt::cublasLtMatrixLayout_t>> {
    let mut raw = MaybeUninit::uninit();
    // SAFETY: writes a layout on success; sizes were checked to fit in i32.
    unsafe { lt::cublasLtMatrixLayoutCreate(raw.as_mut_ptr(), data_type, rows as u64, cols as u64, ld as i64) }
        .result()
        .map_err(library_error("cuBLASLt", "cublasLtMatrixLayoutCreate"))?;
    // SAFETY: initialised by the successful call above.
    Ok(Owned::new(unsafe { raw.assume_init() }, |l| {
        // SAFETY: created above and destroyed once.
        let _ = unsafe { lt::cublasLtMatrixLayoutDestroy(l) };
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_major_c_keeps_operands_and_transposes_row_major_ones() {
        let spec = GemmSpec::new(3, 5, 7, Layout::RowMajor, Layout::ColMajor, Layout::ColMajor);
        let call = ColumnMajorGemm::new(&spec);
        assert!(!call.swapped);
        assert!(call.transpose_first && !call.transpose_second);
        assert_eq!((call.m, call.n, call.k), (3, 5, 7));
        assert_eq!((call.ld_first, call.ld_second, call.ldc), (7, 7, 3));
    }

    #[test]
    fn row_major_c_swaps_operands() {
        let spec = GemmSpec::new(3, 5, 7, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor);
        let call = ColumnMajorGemm::new(&spec);
        assert!(call.swapped);
        assert!(!call.transpose_first && !call.transpose_second);
        assert_eq!((call.m, call.n, call.k), (5, 3, 7));
        assert_eq!((call.ld_first, call.ld_second, call.ldc), (5, 7, 5));
        assert_eq!(call.stored_shapes(), [(5, 7), (7, 3)]);
    }
}
