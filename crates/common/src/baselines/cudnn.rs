//! conv2d forward through cuDNN's graph (backend) API: the baseline for the convolution gates.
//!
//! **Why the graph API.** It is the path PyTorch takes (through cuDNN's frontend, which
//! builds these descriptors). The legacy `cudnnFindConvolutionForwardAlgorithmEx` picks
//! among eight algorithm families. The graph API lists cuDNN's engines with their knob
//! settings (tile sizes, split-K, stages, ...), so the baseline chooses among the kernels a
//! PyTorch user gets, and times them as `torch.backends.cudnn.benchmark` does.
//!
//! **The problem.** Input x is NHWC, filters w are KRSC, output y is NHWK, densely packed. Each
//! tensor is described with its dimensions in cuDNN's NCHW order and NHWC strides
//! ([`nhwc_strides`]), and with the byte alignment of the caller's buffer at setup (up to 16,
//! [`byte_alignment`]); [`Conv2dForward::run`] refuses a buffer that is less aligned. Groups
//! are implied by the filter's channel count, `c / groups`. Compute is fp32 for every input
//! type: f16 and bf16 accumulate in fp32, and f32 runs in full fp32 ([`Fp32Math::Ieee`]) or
//! lets tensor-core engines round inputs to TF32 ([`Fp32Math::Tf32`]).
//!
//! **How the engine is chosen**, once per problem in [`Cudnn::conv2d_forward`]:
//! 1. cuDNN's heuristic `CUDNN_HEUR_MODE_A` ranks engine configs; `CUDNN_HEUR_MODE_FALLBACK`
//!    is asked only when no config of mode A survives the next steps.
//! 2. Configs are filtered by their engines' numerical notes: never `DOWN_CONVERT_INPUTS`, and
//!    no `TENSOR_CORE` engine for f32 in IEEE mode (as PyTorch filters them); never
//!    `REDUCED_PRECISION_REDUCTION` either (our kernels accumulate in fp32, so must the baseline).
//! 3. In heuristic order, execution plans are finalized for up to [`MAX_CANDIDATES`] configs,
//!    skipping those that fail to finalize or need more workspace than [`WORKSPACE_LIMIT`]
//!    (or a quarter of free memory).
//! 4. Each plan runs once on the caller's buffers (one that fails is dropped), then the
//!    survivors are timed interleaved with the project's own [`Timer`] ([`SEARCH_TIMING`], L2
//!    flushed), and the lowest median wins. [`Conv2dForward::algorithm`] says what won.
//!
//! [`Conv2dForward::run`] then only launches the chosen plan.
//!
//! Set a problem up while no other thread keeps the GPU busy. Under CUDA's default lazy
//! module loading, cuDNN's kernels are loaded at their first launch, and loading waits for
//! the GPU's queue to drain. On the H100 (cuDNN 9.14, driver 580), with the legacy search
//! this baseline used before, setups that ran while another thread's long kernels were in
//! flight (a naive GEMM of 1531 x 1277 x 2049, a cuBLASLt fp8 GEMM) failed intermittently:
//! every algorithm that applies came back `CUDNN_STATUS_EXECUTION_FAILED` or
//! `CUDNN_STATUS_INTERNAL_ERROR`, and a later launch could fail the same way. Run alone, or
//! with `CUDA_MODULE_LOADING=EAGER`, every case passed. The graph API's plans launch the same
//! lazily loaded kernels, so expect the same (not yet observed with them). Such a failure comes back as [`GpuError::Library`] with cuDNN's own
//! reason; [`GpuError::Unsupported`] means that no engine applies to the problem, and
//! [`GpuError::LibraryMissing`] that cuDNN, or a sublibrary it needs, is not installed.

use std::cell::RefCell;
use std::ffi::c_void;
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;

use cudarc::cudnn::sys;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};

use super::libraries::{ensure_loaded, VendorLibrary};
use super::spec::{ConvLens, ConvSpec, Fp32Math};
use super::{all_ok, created, library_error, require_symbols, to_i64, Owned};
use crate::element::{DType, Element};
use crate::error::{GpuError, GpuResult};
use crate::gpu::{device_address, Gpu};
use crate::timing::{Candidate, Timer, TimingConfig};

/// The most workspace an execution plan may ask for in the search (some engines ask for
/// several GiB; above this, or above a quarter of free memory, they are skipped).
pub const WORKSPACE_LIMIT: usize = 2 << 30;

/// At most this many execution plans, in heuristic order, are timed against each other.
pub const MAX_CANDIDATES: usize = 8;

/// How the search times its candidates: a few warm-ups, 5 to 50 timed runs each (about
/// 20 ms of work), L2 flushed before every run, as the gates measure.
pub const SEARCH_TIMING: TimingConfig =
    TimingConfig { warmup: 2, min_reps: 5, max_reps: 50, budget_ms: 20.0, flush_l2: true };

/// The largest byte alignment a tensor descriptor claims ([`byte_alignment`]): 16 bytes, the
/// widest vector load, and the alignment TMA needs of a global address.
pub const MAX_ALIGNMENT: i64 = 16;

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

/// Every cuDNN function this module calls, checked once at load.
const SYMBOLS: &[&str] = &[
    "cudnnGetVersion",
    "cudnnGraphVersionCheck",
    "cudnnCreate",
    "cudnnDestroy",
    "cudnnSetStream",
    "cudnnBackendCreateDescriptor",
    "cudnnBackendDestroyDescriptor",
    "cudnnBackendSetAttribute",
    "cudnnBackendGetAttribute",
    "cudnnBackendFinalize",
    "cudnnBackendExecute",
    "cudnnGetLastErrorString",
];

/// The unique ids of x, w and y in the operation graph and every variant pack.
const UIDS: [i64; 3] = [b'x' as i64, b'w' as i64, b'y' as i64];

/// A cuDNN handle bound to one [`Gpu`]'s stream. Not `Send`, as cuDNN handles are per thread.
pub struct Cudnn {
    gpu: Gpu,
    handle: Rc<Owned<sys::cudnnHandle_t>>,
}

/// What the search chose: the engine, its knob settings and how it measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConvAlgorithm {
    /// cuDNN's global engine index (the `eng<N>` of cuDNN's and PyTorch's logs).
    pub engine: i64,
    /// The engine config's knob choices in cuDNN's order, e.g. `TILE_SIZE=3 STAGES=4`;
    /// empty for an engine without knobs.
    pub knobs: String,
    /// The engine's numerical notes, e.g. `["TENSOR_CORE"]`.
    pub notes: Vec<String>,
    /// Workspace the plan runs with.
    pub workspace_bytes: usize,
    /// Its median time in the search, in microseconds ([`SEARCH_TIMING`], on the setup buffers).
    pub time_us: f64,
    /// The heuristic that proposed it: `A` or `FALLBACK`.
    pub heuristic: &'static str,
    /// Its position in that heuristic's list, from 0 (cuDNN's first choice).
    pub rank: usize,
    /// Plans timed against each other: those that finalized within the workspace limit and ran.
    pub candidates: usize,
    /// Engine configs (and heuristics) left out before them: ruled out by a numerical note,
    /// failed to finalize, over the workspace limit, or failed to run. Each is logged at debug
    /// level (`RUST_LOG=debug` in the runner and xtask, which install a tracing subscriber).
    pub skipped: usize,
}

impl fmt::Display for ConvAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "eng{}", self.engine)?;
        if !self.knobs.is_empty() {
            write!(f, " [{}]", self.knobs)?;
        }
        write!(
            f,
            ": {:.2} us, workspace {} B, heuristic {} rank {}, fastest of {} ({} skipped)",
            self.time_us, self.workspace_bytes, self.heuristic, self.rank, self.candidates, self.skipped
        )?;
        if !self.notes.is_empty() {
            write!(f, ", notes {}", self.notes.join(" "))?;
        }
        Ok(())
    }
}

/// One conv2d forward problem, set up once: its operation graph, the fastest execution plan
/// and its workspace. [`Conv2dForward::run`] only launches.
pub struct Conv2dForward<T> {
    gpu: Gpu,
    spec: ConvSpec,
    lens: ConvLens,
    /// Byte alignment of x, w and y the plan was made for.
    alignments: [i64; 3],
    algorithm: ConvAlgorithm,
    /// The variant pack of the last run, with the addresses (x, w, y, workspace) it binds.
    pack: RefCell<Option<([u64; 4], Descriptor)>>,
    plan: Plan,
    workspace: Option<CudaSlice<u8>>,
    _graph: ConvGraph,
    // Declared last: the descriptors above go first.
    handle: Rc<Owned<sys::cudnnHandle_t>>,
    _element: PhantomData<T>,
}

impl Cudnn {
    /// Loads cuDNN 9 (a typed [`GpuError::LibraryMissing`] when it, or its graph sublibrary,
    /// is not installed) and binds a handle to `gpu`'s stream.
    pub fn new(gpu: &Gpu) -> GpuResult<Cudnn> {
        load_cudnn9(SYMBOLS)?;
        // SAFETY: takes no arguments; loads the graph sublibrary and checks its version.
        unsafe { sys::cudnnGraphVersionCheck() }.result().map_err(|status| GpuError::LibraryMissing {
            library: LIBRARY,
            detail: format!("the graph sublibrary (libcudnn_graph) failed to load or match: {status:?}"),
        })?;
        gpu.ctx.bind_to_thread()?;
        let handle =
            created("cuDNN", "cudnnCreate", sys::cudnnCreate, sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS, |h| {
                // SAFETY: created here and destroyed once, after every descriptor that uses it.
                let _ = unsafe { sys::cudnnDestroy(h) };
            })?;
        // SAFETY: valid handle and stream.
        unsafe { sys::cudnnSetStream(handle.raw, gpu.stream.cu_stream() as sys::cudaStream_t) }
            .result()
            .map_err(library_error("cuDNN", "cudnnSetStream"))?;
        Ok(Cudnn { gpu: gpu.clone(), handle: Rc::new(handle) })
    }

    /// Sets up `spec` and chooses its fastest execution plan by running the candidates on
    /// `x`, `w` and `y` (so `y` is overwritten; see the module docs). Pass the buffers the
    /// timed runs will use: the plan is made for their alignment, and cuDNN's choice then
    /// reflects real data.
    pub fn conv2d_forward<T: Element>(
        &self,
        spec: &ConvSpec,
        x: &impl DevicePtr<T>,
        w: &impl DevicePtr<T>,
        y: &mut impl DevicePtrMut<T>,
    ) -> GpuResult<Conv2dForward<T>> {
        let lens = spec.validate(x.len(), w.len(), y.len())?;
        let data_type = cudnn_data_type(T::DTYPE)?;
        // cuDNN's frontend refuses such filters: implicit-GEMM kernels index them in 32 bits.
        if lens.w > i32::MAX as usize {
            return Err(GpuError::Unsupported {
                what: "cuDNN conv2d forward",
                detail: format!("{} filter elements (cuDNN's kernels index at most {})", lens.w, i32::MAX),
            });
        }
        let shapes = TensorShapes::new(spec, &lens)?;

        self.gpu.ctx.bind_to_thread()?;
        let stream = &self.gpu.stream;
        let (px, _rx) = x.device_ptr(stream);
        let (pw, _rw) = w.device_ptr(stream);
        let (py, _ry) = y.device_ptr_mut(stream);
        let addresses = [px, pw, py];
        let alignments = addresses.map(byte_alignment);
        let graph = ConvGraph::new(self.handle.raw, ConvOperation::new(data_type, &shapes, alignments)?)?;

        let (free, _total) = cudarc::driver::result::mem_get_info()?;
        let search = Search {
            gpu: &self.gpu,
            handle: self.handle.raw,
            dtype: T::DTYPE,
            fp32_math: spec.fp32_math,
            workspace_limit: WORKSPACE_LIMIT.min(free / 4),
            addresses,
        };
        let (plan, algorithm) = search.run(&graph).map_err(|failure| failure.into_error(spec, T::DTYPE))?;
        tracing::debug!(spec = ?spec, dtype = %T::DTYPE, %algorithm, "cuDNN conv2d forward engine");
        let workspace = match algorithm.workspace_bytes {
            0 => None,
            bytes => Some(stream.alloc_zeros::<u8>(bytes)?),
        };
        Ok(Conv2dForward {
            gpu: self.gpu.clone(),
            spec: *spec,
            lens,
            alignments,
            algorithm,
            pack: RefCell::new(None),
            plan,
            workspace,
            _graph: graph,
            handle: self.handle.clone(),
            _element: PhantomData,
        })
    }
}

impl<T: Element> Conv2dForward<T> {
    /// `y = conv2d(x, w)` with the plan chosen at setup. Buffer lengths are checked before
    /// any CUDA call, and the alignment the plan was made for before any cuDNN call.
    pub fn run(&self, x: &impl DevicePtr<T>, w: &impl DevicePtr<T>, y: &mut impl DevicePtrMut<T>) -> GpuResult<()> {
        self.spec.validate(x.len(), w.len(), y.len())?;
        self.gpu.ctx.bind_to_thread()?;
        let stream = &self.gpu.stream;
        let (px, _rx) = x.device_ptr(stream);
        let (pw, _rw) = w.device_ptr(stream);
        let (py, _ry) = y.device_ptr_mut(stream);
        let names = ["cuDNN conv input x", "cuDNN conv filter w", "cuDNN conv output y"];
        for ((what, address), align) in names.into_iter().zip([px, pw, py]).zip(self.alignments) {
            if byte_alignment(address) < align {
                return Err(GpuError::Misaligned { what, address, align: align as usize });
            }
        }
        let (workspace, _rws) = match &self.workspace {
            Some(ws) => {
                let (ptr, record) = ws.device_ptr(stream);
                (ptr, Some(record))
            }
            None => (0, None),
        };
        // A variant pack is rebuilt only when the buffers change.
        let key = [px, pw, py, workspace];
        let mut cache = self.pack.borrow_mut();
        let pack = match cache.take() {
            Some((bound, pack)) if bound == key => pack,
            _ => variant_pack([px, pw, py], workspace)?,
        };
        let result = execute(self.handle.raw, &self.plan.plan, &pack);
        *cache = Some((key, pack));
        result
    }

    /// The problem this plan solves.
    pub fn spec(&self) -> &ConvSpec {
        &self.spec
    }

    /// The tensor lengths and output size of [`Conv2dForward::spec`].
    pub fn lens(&self) -> ConvLens {
        self.lens
    }

    /// The engine the search chose, its knobs, workspace and measured time.
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

// --- The operation graph --------------------------------------------------------------------

/// Dimensions of x, w and y in cuDNN's order (NCHW, KCRS, NKPQ), and the convolution's
/// padding, strides and dilation, as the `int64_t`s the graph API takes.
struct TensorShapes {
    x: [i64; 4],
    w: [i64; 4],
    y: [i64; 4],
    pad: [i64; 2],
    stride: [i64; 2],
    dilation: [i64; 2],
}

impl TensorShapes {
    fn new(spec: &ConvSpec, lens: &ConvLens) -> GpuResult<TensorShapes> {
        let int = |v: usize| to_i64("cuDNN's graph API", v);
        // Every product of dimensions below is at most a tensor's length, which fits too.
        all_ok([lens.x, lens.w, lens.y].map(int))?;
        let [n, h, w, c, k, r, s, cg, p, q] = all_ok(
            [spec.n, spec.h, spec.w, spec.c, spec.k, spec.r, spec.s, spec.channels_per_group(), lens.p, lens.q]
                .map(int),
        )?;
        let [pad_h, pad_w, stride_h, stride_w, dil_h, dil_w] = all_ok(
            [spec.pad[0], spec.pad[1], spec.stride[0], spec.stride[1], spec.dilation[0], spec.dilation[1]].map(int),
        )?;
        Ok(TensorShapes {
            x: [n, c, h, w],
            w: [k, cg, r, s],
            y: [n, k, p, q],
            pad: [pad_h, pad_w],
            stride: [stride_h, stride_w],
            dilation: [dil_h, dil_w],
        })
    }
}

/// Strides of a densely packed NHWC tensor for dimensions given in NCHW order, as cuDNN's
/// graph API describes layouts: `[n, c, h, w]` gives `[h*w*c, 1, w*c, c]`. KRSC filters are
/// the same with `[k, c/groups, r, s]`, NHWK outputs with `[n, k, p, q]`.
pub fn nhwc_strides([_n, c, h, w]: [i64; 4]) -> [i64; 4] {
    [h * w * c, 1, w * c, c]
}

/// The byte alignment a tensor descriptor claims for a buffer at `address`: the largest
/// power of two that divides it, at most [`MAX_ALIGNMENT`]. (PyTorch claims up to 32.) cuDNN
/// requires a multiple of the element size, which a typed buffer always has.
pub fn byte_alignment(address: u64) -> i64 {
    if address == 0 {
        return MAX_ALIGNMENT;
    }
    (1i64 << address.trailing_zeros().min(MAX_ALIGNMENT.trailing_zeros())).min(MAX_ALIGNMENT)
}

/// The finalized operation graph of one problem, and the operation it holds, kept as long
/// as any plan made from it.
struct ConvGraph {
    graph: Descriptor,
    _operation: ConvOperation,
}

impl ConvGraph {
    fn new(handle: sys::cudnnHandle_t, operation: ConvOperation) -> GpuResult<ConvGraph> {
        use sys::cudnnBackendAttributeName_t::*;
        let graph = descriptor(sys::cudnnBackendDescriptorType_t::CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR)?;
        set(&graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, &[handle])?;
        set(&graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, &[operation.operation.raw])?;
        finalize_or_error(&graph, "the operation graph")?;
        Ok(ConvGraph { graph, _operation: operation })
    }
}

/// The finalized convolution forward operation and the descriptors it was built from. It
/// needs no handle, and so no GPU.
struct ConvOperation {
    operation: Descriptor,
    _convolution: Descriptor,
    _tensors: [Descriptor; 3],
}

impl ConvOperation {
    fn new(data_type: sys::cudnnDataType_t, shapes: &TensorShapes, alignments: [i64; 3]) -> GpuResult<ConvOperation> {
        use sys::cudnnBackendAttributeName_t::*;
        use sys::cudnnBackendDescriptorType_t::*;
        let tensor = |uid: i64, dims: [i64; 4], alignment: i64| -> GpuResult<Descriptor> {
            let desc = descriptor(CUDNN_BACKEND_TENSOR_DESCRIPTOR)?;
            set(&desc, CUDNN_ATTR_TENSOR_DATA_TYPE, &[data_type])?;
            set(&desc, CUDNN_ATTR_TENSOR_DIMENSIONS, &dims)?;
            set(&desc, CUDNN_ATTR_TENSOR_STRIDES, &nhwc_strides(dims))?;
            set(&desc, CUDNN_ATTR_TENSOR_UNIQUE_ID, &[uid])?;
            set(&desc, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, &[alignment])?;
            finalize_or_error(&desc, "a tensor descriptor")?;
            Ok(desc)
        };
        let x = tensor(UIDS[0], shapes.x, alignments[0])?;
        let w = tensor(UIDS[1], shapes.w, alignments[1])?;
        let y = tensor(UIDS[2], shapes.y, alignments[2])?;

        let convolution = descriptor(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR)?;
        // fp32 accumulation for every input type.
        set(&convolution, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, &[sys::cudnnDataType_t::CUDNN_DATA_FLOAT])?;
        set(&convolution, CUDNN_ATTR_CONVOLUTION_CONV_MODE, &[sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION])?;
        set(&convolution, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, &[2i64])?;
        set(&convolution, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, &shapes.pad)?;
        set(&convolution, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, &shapes.pad)?;
        set(&convolution, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, &shapes.stride)?;
        set(&convolution, CUDNN_ATTR_CONVOLUTION_DILATIONS, &shapes.dilation)?;
        finalize_or_error(&convolution, "the convolution descriptor")?;

        let operation = descriptor(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR)?;
        set(&operation, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, &[x.raw])?;
        set(&operation, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, &[w.raw])?;
        set(&operation, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, &[y.raw])?;
        set(&operation, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, &[convolution.raw])?;
        // Float scalars, as cuDNN takes them for float compute.
        set(&operation, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, &[1.0f32])?;
        set(&operation, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, &[0.0f32])?;
        finalize_or_error(&operation, "the convolution forward operation")?;
        Ok(ConvOperation { operation, _convolution: convolution, _tensors: [x, w, y] })
    }
}

// --- The search -------------------------------------------------------------------------------

/// cuDNN's heuristics, in the order they are asked, with the names [`ConvAlgorithm`] records.
const HEURISTICS: [(sys::cudnnBackendHeurMode_t, &str); 2] = [
    (sys::cudnnBackendHeurMode_t::CUDNN_HEUR_MODE_A, "A"),
    (sys::cudnnBackendHeurMode_t::CUDNN_HEUR_MODE_FALLBACK, "FALLBACK"),
];

/// A finalized execution plan, with the engine config it was made from.
struct Plan {
    plan: Descriptor,
    config: Descriptor,
    engine: i64,
    notes: Vec<u32>,
    rank: usize,
    workspace_bytes: usize,
}

/// Why an engine config, or a whole heuristic, yielded no candidate.
#[derive(Debug, Clone, PartialEq)]
enum Rejection {
    /// The heuristic descriptor did not finalize.
    Heuristic { mode: &'static str, status: sys::cudnnStatus_t, reason: String },
    /// A numerical note rules the engine out ([`rejected_by_notes`]).
    Note { engine: i64, note: &'static str },
    /// The execution plan did not finalize.
    Finalize { engine: i64, status: sys::cudnnStatus_t, reason: String },
    /// The plan needs more workspace than the search may give it.
    Workspace { engine: i64, bytes: usize, limit: usize },
    /// The plan finalized but its first run failed.
    Execute { engine: i64, status: sys::cudnnStatus_t, reason: String },
}

/// Everything the search rejected, when it found no plan.
#[derive(Debug)]
enum SearchFailure {
    /// No candidate: the rejections say why.
    NoPlan(Vec<Rejection>),
    /// A call that must not fail did.
    Error(GpuError),
}

impl From<GpuError> for SearchFailure {
    fn from(error: GpuError) -> Self {
        SearchFailure::Error(error)
    }
}

impl SearchFailure {
    /// [`GpuError::LibraryMissing`] when a sublibrary cuDNN needed is missing;
    /// [`GpuError::Library`] when a plan failed to run, or cuDNN failed otherwise than by
    /// refusing the problem; [`GpuError::Unsupported`] when every engine refused it (or
    /// needs more workspace than the limit, or has a note the baseline rules out).
    fn into_error(self, spec: &ConvSpec, dtype: DType) -> GpuError {
        let rejections = match self {
            SearchFailure::Error(error) => return error,
            SearchFailure::NoPlan(rejections) => rejections,
        };
        let statuses = rejections.iter().filter_map(|r| match r {
            Rejection::Heuristic { status, .. }
            | Rejection::Finalize { status, .. }
            | Rejection::Execute { status, .. } => Some(*status),
            _ => None,
        });
        let detail = format!("{spec:?} in {dtype}: no execution plan ran ({rejections:?})");
        if statuses.clone().any(is_sublibrary_missing) {
            return GpuError::LibraryMissing { library: LIBRARY, detail };
        }
        let ran_and_failed = rejections.iter().any(|r| matches!(r, Rejection::Execute { .. }));
        if ran_and_failed || statuses.clone().any(|s| !is_not_supported(s)) {
            return GpuError::Library {
                library: "cuDNN",
                detail: format!(
                    "{detail}. If a plan that applies failed to execute while other threads had kernels \
                     in flight, set the problem up while the GPU is otherwise idle, or load modules eagerly \
                     (CUDA_MODULE_LOADING=EAGER)"
                ),
            };
        }
        GpuError::Unsupported { what: "cuDNN conv2d forward", detail }
    }
}

/// One search: the problem's fixed inputs.
struct Search<'a> {
    gpu: &'a Gpu,
    handle: sys::cudnnHandle_t,
    dtype: DType,
    fp32_math: Fp32Math,
    workspace_limit: usize,
    /// x, w and y on the device.
    addresses: [u64; 3],
}

impl Search<'_> {
    /// The fastest plan of the first heuristic that yields one, and what was chosen.
    fn run(&self, graph: &ConvGraph) -> Result<(Plan, ConvAlgorithm), SearchFailure> {
        let mut rejections = Vec::new();
        for (mode, heuristic) in HEURISTICS {
            let configs = match engine_configs(graph, mode)? {
                Ok(configs) => configs,
                Err((status, reason)) => {
                    rejections.push(Rejection::Heuristic { mode: heuristic, status, reason });
                    continue;
                }
            };
            let plans = self.plans(configs, &mut rejections)?;
            if plans.is_empty() {
                continue;
            }
            // One workspace, as large as the largest plan's, serves every run of the search.
            let workspace = self.workspace(plans.iter().map(|p| p.workspace_bytes).max().unwrap_or(0))?;
            let plans = self.probe(plans, &workspace, &mut rejections)?;
            if !plans.is_empty() {
                tracing::debug!(?rejections, "cuDNN conv2d forward: engine configs left out");
                let (plan, algorithm) = self.fastest(plans, &workspace, heuristic)?;
                return Ok((plan, ConvAlgorithm { skipped: rejections.len(), ..algorithm }));
            }
        }
        Err(SearchFailure::NoPlan(rejections))
    }

    /// Finalized plans for up to [`MAX_CANDIDATES`] configs, in heuristic order.
    fn plans(&self, configs: Vec<Descriptor>, rejections: &mut Vec<Rejection>) -> GpuResult<Vec<Plan>> {
        use sys::cudnnBackendAttributeName_t::*;
        let mut plans = Vec::new();
        for (rank, config) in configs.into_iter().enumerate() {
            if plans.len() == MAX_CANDIDATES {
                break;
            }
            let engine_desc = descriptor(sys::cudnnBackendDescriptorType_t::CUDNN_BACKEND_ENGINE_DESCRIPTOR)?;
            get(&config, CUDNN_ATTR_ENGINECFG_ENGINE, &mut [engine_desc.raw])?;
            let engine = get_one::<i64>(&engine_desc, CUDNN_ATTR_ENGINE_GLOBAL_INDEX)?;
            let mut notes = [NoteCode(u32::MAX); 32];
            let count = get(&engine_desc, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, &mut notes)?.min(notes.len());
            let notes: Vec<u32> = notes[..count].iter().map(|n| n.0).collect();
            if let Some(note) = rejected_by_notes(&notes, self.dtype, self.fp32_math) {
                rejections.push(Rejection::Note { engine, note });
                continue;
            }

            let plan = descriptor(sys::cudnnBackendDescriptorType_t::CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR)?;
            set(&plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, &[self.handle])?;
            set(&plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, &[config.raw])?;
            if let Err(status) = finalize(&plan) {
                rejections.push(Rejection::Finalize { engine, status, reason: last_error_string() });
                continue;
            }
            let bytes = get_one::<i64>(&plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE)?;
            let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
            if bytes > self.workspace_limit {
                rejections.push(Rejection::Workspace { engine, bytes, limit: self.workspace_limit });
                continue;
            }
            plans.push(Plan { plan, config, engine, notes, rank, workspace_bytes: bytes });
        }
        Ok(plans)
    }

    /// Runs every plan once on the caller's buffers and keeps those that ran. The workspace
    /// holds at least every plan's own.
    fn probe(&self, plans: Vec<Plan>, workspace: &Workspace, rejections: &mut Vec<Rejection>) -> GpuResult<Vec<Plan>> {
        let mut ran = Vec::new();
        for plan in plans {
            let pack = variant_pack(self.addresses, workspace.address)?;
            // SAFETY: the plan is finalized for these buffers' shapes and alignments, and the
            // workspace is large enough.
            match unsafe { sys::cudnnBackendExecute(self.handle, plan.plan.raw, pack.raw) }.result() {
                Ok(()) => ran.push(plan),
                Err(error) => rejections.push(Rejection::Execute {
                    engine: plan.engine,
                    status: error.0,
                    reason: last_error_string(),
                }),
            }
        }
        // A kernel that faulted shows here, not at its launch.
        self.gpu.stream.synchronize()?;
        Ok(ran)
    }

    /// Times `plans` interleaved on the caller's buffers and returns the one with the lowest
    /// median, and its description.
    fn fastest(
        &self,
        mut plans: Vec<Plan>,
        workspace: &Workspace,
        heuristic: &'static str,
    ) -> GpuResult<(Plan, ConvAlgorithm)> {
        let packs =
            plans.iter().map(|_| variant_pack(self.addresses, workspace.address)).collect::<GpuResult<Vec<_>>>()?;
        let handle = self.handle;
        let mut runs: Vec<_> =
            plans.iter().zip(&packs).map(|(plan, pack)| move |_rep: usize| execute(handle, &plan.plan, pack)).collect();
        let mut candidates: Vec<Candidate<'_>> = runs.iter_mut().map(|run| run as Candidate<'_>).collect();
        let stats = Timer::new(self.gpu, SEARCH_TIMING)?.time_interleaved(&mut candidates)?;
        drop(candidates);
        drop(runs);
        let (best, best_us) = stats
            .iter()
            .map(|s| s.median_us)
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("at least one plan is timed");
        let candidates = plans.len();
        let plan = plans.swap_remove(best);
        let knobs = knob_choices(&plan.config)?;
        let algorithm = ConvAlgorithm {
            engine: plan.engine,
            knobs: knob_string(&knobs),
            notes: plan.notes.iter().map(|&n| note_name(n)).collect(),
            workspace_bytes: plan.workspace_bytes,
            time_us: best_us,
            heuristic,
            rank: plan.rank,
            candidates,
            skipped: 0,
        };
        Ok((plan, algorithm))
    }

    /// A zeroed workspace of `bytes` (none for 0) and its device address.
    fn workspace(&self, bytes: usize) -> GpuResult<Workspace> {
        let buffer = match bytes {
            0 => None,
            bytes => Some(self.gpu.stream.alloc_zeros::<u8>(bytes)?),
        };
        let address = buffer.as_ref().map_or(0, |b| device_address(b, &self.gpu.stream));
        Ok(Workspace { _buffer: buffer, address })
    }
}

/// A device buffer held while its address is in use.
struct Workspace {
    _buffer: Option<CudaSlice<u8>>,
    address: u64,
}

/// A status cuDNN returned, with its last error string.
type Refusal = (sys::cudnnStatus_t, String);

/// The engine configs `mode` proposes for `graph`, best first, or the [`Refusal`] when the
/// heuristic does not apply.
fn engine_configs(graph: &ConvGraph, mode: sys::cudnnBackendHeurMode_t) -> GpuResult<Result<Vec<Descriptor>, Refusal>> {
    use sys::cudnnBackendAttributeName_t::*;
    let heuristic = descriptor(sys::cudnnBackendDescriptorType_t::CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR)?;
    set(&heuristic, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, &[graph.graph.raw])?;
    set(&heuristic, CUDNN_ATTR_ENGINEHEUR_MODE, &[mode])?;
    if let Err(status) = finalize(&heuristic) {
        return Ok(Err((status, last_error_string())));
    }
    let count = get::<sys::cudnnBackendDescriptor_t>(&heuristic, CUDNN_ATTR_ENGINEHEUR_RESULTS, &mut [])?;
    let configs = (0..count)
        .map(|_| descriptor(sys::cudnnBackendDescriptorType_t::CUDNN_BACKEND_ENGINECFG_DESCRIPTOR))
        .collect::<GpuResult<Vec<_>>>()?;
    let mut raws: Vec<_> = configs.iter().map(|c| c.raw).collect();
    let written = get(&heuristic, CUDNN_ATTR_ENGINEHEUR_RESULTS, &mut raws)?.min(configs.len());
    Ok(Ok(configs.into_iter().take(written).collect()))
}

/// The knob choices of an engine config, as (knob type code, value).
fn knob_choices(config: &Descriptor) -> GpuResult<Vec<(u32, i64)>> {
    use sys::cudnnBackendAttributeName_t::*;
    let count = sys::cudnnBackendKnobType_t::CUDNN_KNOB_TYPE_COUNTS as usize;
    let knobs = (0..count)
        .map(|_| descriptor(sys::cudnnBackendDescriptorType_t::CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR))
        .collect::<GpuResult<Vec<_>>>()?;
    let mut raws: Vec<_> = knobs.iter().map(|k| k.raw).collect();
    let written = get(config, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES, &mut raws)?.min(count);
    knobs[..written]
        .iter()
        .map(|knob| {
            let kind = get_one::<KnobCode>(knob, CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE)?;
            Ok((kind.0, get_one::<i64>(knob, CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE)?))
        })
        .collect()
}

/// A variant pack binding x, w, y and the workspace to the graph's unique ids.
fn variant_pack(addresses: [u64; 3], workspace: u64) -> GpuResult<Descriptor> {
    use sys::cudnnBackendAttributeName_t::*;
    let pack = descriptor(sys::cudnnBackendDescriptorType_t::CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)?;
    set(&pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, &UIDS)?;
    set(&pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, &addresses.map(DeviceAddress::new))?;
    set(&pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, &[DeviceAddress::new(workspace)])?;
    finalize_or_error(&pack, "a variant pack")?;
    Ok(pack)
}

/// Launches `plan` on the buffers `pack` binds.
fn execute(handle: sys::cudnnHandle_t, plan: &Descriptor, pack: &Descriptor) -> GpuResult<()> {
    // SAFETY: the plan was finalized for the buffers the pack binds (their lengths and
    // alignment checked by the caller) and the workspace it holds.
    unsafe { sys::cudnnBackendExecute(handle, plan.raw, pack.raw) }.result().map_err(|error| GpuError::Library {
        library: "cuDNN",
        detail: format!("cudnnBackendExecute returned {:?}; cuDNN's last error: {:?}", error.0, last_error_string()),
    })
}

// --- Numerical notes and knobs -----------------------------------------------------------------

/// Every numerical note cudarc's bindings know, in code order.
const NOTES: [sys::cudnnBackendNumericalNote_t; 10] = {
    use sys::cudnnBackendNumericalNote_t::*;
    [
        CUDNN_NUMERICAL_NOTE_TENSOR_CORE,
        CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS,
        CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION,
        CUDNN_NUMERICAL_NOTE_FFT,
        CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC,
        CUDNN_NUMERICAL_NOTE_WINOGRAD,
        CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_4x4,
        CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_6x6,
        CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_13x13,
        CUDNN_NUMERICAL_NOTE_STRICT_NAN_PROP,
    ]
};

/// Every knob type cudarc's bindings know, in code order.
const KNOBS: [sys::cudnnBackendKnobType_t; 44] = {
    use sys::cudnnBackendKnobType_t::*;
    [
        CUDNN_KNOB_TYPE_SPLIT_K,
        CUDNN_KNOB_TYPE_SWIZZLE,
        CUDNN_KNOB_TYPE_TILE_SIZE,
        CUDNN_KNOB_TYPE_USE_TEX,
        CUDNN_KNOB_TYPE_EDGE,
        CUDNN_KNOB_TYPE_KBLOCK,
        CUDNN_KNOB_TYPE_LDGA,
        CUDNN_KNOB_TYPE_LDGB,
        CUDNN_KNOB_TYPE_CHUNK_K,
        CUDNN_KNOB_TYPE_SPLIT_H,
        CUDNN_KNOB_TYPE_WINO_TILE,
        CUDNN_KNOB_TYPE_MULTIPLY,
        CUDNN_KNOB_TYPE_SPLIT_K_BUF,
        CUDNN_KNOB_TYPE_TILEK,
        CUDNN_KNOB_TYPE_STAGES,
        CUDNN_KNOB_TYPE_REDUCTION_MODE,
        CUDNN_KNOB_TYPE_CTA_SPLIT_K_MODE,
        CUDNN_KNOB_TYPE_SPLIT_K_SLC,
        CUDNN_KNOB_TYPE_IDX_MODE,
        CUDNN_KNOB_TYPE_SLICED,
        CUDNN_KNOB_TYPE_SPLIT_RS,
        CUDNN_KNOB_TYPE_SINGLEBUFFER,
        CUDNN_KNOB_TYPE_LDGC,
        CUDNN_KNOB_TYPE_SPECFILT,
        CUDNN_KNOB_TYPE_KERNEL_CFG,
        CUDNN_KNOB_TYPE_WORKSPACE,
        CUDNN_KNOB_TYPE_TILE_CGA,
        CUDNN_KNOB_TYPE_TILE_CGA_M,
        CUDNN_KNOB_TYPE_TILE_CGA_N,
        CUDNN_KNOB_TYPE_BLOCK_SIZE,
        CUDNN_KNOB_TYPE_OCCUPANCY,
        CUDNN_KNOB_TYPE_ARRAY_SIZE_PER_THREAD,
        CUDNN_KNOB_TYPE_NUM_C_PER_BLOCK,
        CUDNN_KNOB_TYPE_SPLIT_COLS,
        CUDNN_KNOB_TYPE_TILE_ROWS,
        CUDNN_KNOB_TYPE_TILE_COLS,
        CUDNN_KNOB_TYPE_LOAD_SIZE,
        CUDNN_KNOB_TYPE_CTA_COUNT,
        CUDNN_KNOB_TYPE_STREAM_K,
        CUDNN_KNOB_TYPE_SPLIT_P_SLC,
        CUDNN_KNOB_TYPE_TILE_M,
        CUDNN_KNOB_TYPE_TILE_N,
        CUDNN_KNOB_TYPE_WARP_SPEC_CFG,
        CUDNN_KNOB_TYPE_SWAP_AB,
    ]
};

/// A numerical note's name without cuDNN's prefix (`TENSOR_CORE`), or `NOTE_<code>` for
/// one newer than the bindings.
fn note_name(code: u32) -> String {
    match NOTES.iter().find(|note| **note as u32 == code) {
        Some(note) => format!("{note:?}").trim_start_matches("CUDNN_NUMERICAL_NOTE_").to_string(),
        None => format!("NOTE_{code}"),
    }
}

/// A knob type's name without cuDNN's prefix (`TILE_SIZE`), or `KNOB_<code>` for one newer
/// than the bindings.
fn knob_name(code: u32) -> String {
    match KNOBS.iter().find(|knob| **knob as u32 == code) {
        Some(knob) => format!("{knob:?}").trim_start_matches("CUDNN_KNOB_TYPE_").to_string(),
        None => format!("KNOB_{code}"),
    }
}

/// Knob choices as `NAME=value` pairs separated by spaces, in the order given.
fn knob_string(knobs: &[(u32, i64)]) -> String {
    knobs.iter().map(|&(kind, value)| format!("{}={value}", knob_name(kind))).collect::<Vec<_>>().join(" ")
}

/// The first of an engine's numerical notes that rules it out for this baseline, by name:
/// inputs converted down (PyTorch drops these too), a reduction below fp32 (the baseline
/// accumulates in fp32, as our kernels do), or tensor cores for f32 in IEEE mode (TF32).
fn rejected_by_notes(notes: &[u32], dtype: DType, fp32_math: Fp32Math) -> Option<&'static str> {
    use sys::cudnnBackendNumericalNote_t::*;
    notes.iter().find_map(|&note| {
        if note == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS as u32 {
            Some("DOWN_CONVERT_INPUTS")
        } else if note == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION as u32 {
            Some("REDUCED_PRECISION_REDUCTION")
        } else if note == CUDNN_NUMERICAL_NOTE_TENSOR_CORE as u32 && dtype == DType::F32 && fp32_math == Fp32Math::Ieee
        {
            Some("TENSOR_CORE (TF32) in IEEE fp32 mode")
        } else {
            None
        }
    })
}

// --- Backend descriptors and their attributes --------------------------------------------------

/// A backend descriptor, destroyed on drop.
type Descriptor = Owned<sys::cudnnBackendDescriptor_t>;

fn descriptor(kind: sys::cudnnBackendDescriptorType_t) -> GpuResult<Descriptor> {
    let mut raw: sys::cudnnBackendDescriptor_t = std::ptr::null_mut();
    // SAFETY: writes one descriptor when it succeeds.
    unsafe { sys::cudnnBackendCreateDescriptor(kind, &mut raw) }
        .result()
        .map_err(|error| backend_error("cudnnBackendCreateDescriptor", kind, error.0))?;
    Ok(Owned::new(raw, |d| {
        // SAFETY: created above and destroyed once, before the handle.
        let _ = unsafe { sys::cudnnBackendDestroyDescriptor(d) };
    }))
}

/// A Rust type with the layout cuDNN reads and writes for the attribute type [`Self::TYPE`].
///
/// # Safety
/// An implementation promises that layout.
unsafe trait AttributeValue: Copy {
    const TYPE: sys::cudnnBackendAttributeType_t;
}

macro_rules! attribute_values {
    ($($rust:ty => $kind:ident),* $(,)?) => {
        $(
            // SAFETY: the C type of this attribute type is this Rust type (or an enum or
            // pointer with its layout).
            unsafe impl AttributeValue for $rust {
                const TYPE: sys::cudnnBackendAttributeType_t = sys::cudnnBackendAttributeType_t::$kind;
            }
        )*
    };
}

attribute_values! {
    i64 => CUDNN_TYPE_INT64,
    f32 => CUDNN_TYPE_FLOAT,
    sys::cudnnDataType_t => CUDNN_TYPE_DATA_TYPE,
    sys::cudnnConvolutionMode_t => CUDNN_TYPE_CONVOLUTION_MODE,
    sys::cudnnBackendHeurMode_t => CUDNN_TYPE_HEUR_MODE,
    sys::cudnnHandle_t => CUDNN_TYPE_HANDLE,
    sys::cudnnBackendDescriptor_t => CUDNN_TYPE_BACKEND_DESCRIPTOR,
    DeviceAddress => CUDNN_TYPE_VOID_PTR,
    NoteCode => CUDNN_TYPE_NUMERICAL_NOTE,
    KnobCode => CUDNN_TYPE_KNOB_TYPE,
}

/// A device address, as the `void *` of a variant pack.
#[repr(transparent)]
#[derive(Clone, Copy)]
struct DeviceAddress(*mut c_void);

impl DeviceAddress {
    fn new(address: u64) -> Self {
        DeviceAddress(address as *mut c_void)
    }
}

/// A numerical note as cuDNN writes it, kept as a code: the library may know notes that the
/// bindings' enum does not, and reading one into the enum would be undefined behaviour.
#[repr(transparent)]
#[derive(Clone, Copy)]
struct NoteCode(u32);

/// A knob type as cuDNN writes it, kept as a code (see [`NoteCode`]).
#[repr(transparent)]
#[derive(Clone, Copy, Default)]
struct KnobCode(u32);

fn set<V: AttributeValue>(desc: &Descriptor, name: sys::cudnnBackendAttributeName_t, values: &[V]) -> GpuResult<()> {
    // SAFETY: `values` holds `values.len()` elements of the C type V::TYPE names; cuDNN copies them.
    unsafe { sys::cudnnBackendSetAttribute(desc.raw, name, V::TYPE, values.len() as i64, values.as_ptr().cast()) }
        .result()
        .map_err(|error| backend_error("cudnnBackendSetAttribute", name, error.0))
}

/// Reads up to `out.len()` elements of attribute `name` into `out` and returns how many the
/// attribute holds (with an empty `out`, only the count). Backend descriptors are written
/// into: `out` holds descriptors created beforehand, of the type the attribute holds.
fn get<V: AttributeValue>(
    desc: &Descriptor,
    name: sys::cudnnBackendAttributeName_t,
    out: &mut [V],
) -> GpuResult<usize> {
    let mut count = 0i64;
    let elements = if out.is_empty() { std::ptr::null_mut() } else { out.as_mut_ptr().cast() };
    // SAFETY: room for `out.len()` elements of V::TYPE's C type, and one count.
    unsafe { sys::cudnnBackendGetAttribute(desc.raw, name, V::TYPE, out.len() as i64, &mut count, elements) }
        .result()
        .map_err(|error| backend_error("cudnnBackendGetAttribute", name, error.0))?;
    Ok(usize::try_from(count).unwrap_or(0))
}

fn get_one<V: AttributeValue + Default>(desc: &Descriptor, name: sys::cudnnBackendAttributeName_t) -> GpuResult<V> {
    let mut value = [V::default()];
    get(desc, name, &mut value)?;
    Ok(value[0])
}

fn finalize(desc: &Descriptor) -> Result<(), sys::cudnnStatus_t> {
    // SAFETY: a valid descriptor whose attributes are set.
    unsafe { sys::cudnnBackendFinalize(desc.raw) }.result().map_err(|error| error.0)
}

/// [`finalize`], with a refusal as [`GpuError::Unsupported`] (the problem, not the call, is
/// the reason), a missing sublibrary as [`GpuError::LibraryMissing`], and anything else as
/// [`GpuError::Library`].
fn finalize_or_error(desc: &Descriptor, what: &str) -> GpuResult<()> {
    finalize(desc).map_err(|status| {
        let detail = format!("finalizing {what} returned {status:?}; cuDNN's last error: {:?}", last_error_string());
        if is_sublibrary_missing(status) {
            GpuError::LibraryMissing { library: LIBRARY, detail }
        } else if is_not_supported(status) {
            GpuError::Unsupported { what: "cuDNN conv2d forward", detail }
        } else {
            GpuError::Library { library: "cuDNN", detail }
        }
    })
}

fn backend_error(call: &str, what: impl fmt::Debug, status: sys::cudnnStatus_t) -> GpuError {
    GpuError::Library {
        library: "cuDNN",
        detail: format!("{call}({what:?}) returned {status:?}; cuDNN's last error: {:?}", last_error_string()),
    }
}

/// cuDNN 9's NOT_SUPPORTED family (3000-3999): the problem, not the run, is the reason.
fn is_not_supported(status: sys::cudnnStatus_t) -> bool {
    (status as u32) / 1000 == sys::cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED as u32 / 1000
}

/// A sublibrary that cuDNN opens on first use (engines, heuristics) is missing or mismatched.
fn is_sublibrary_missing(status: sys::cudnnStatus_t) -> bool {
    use sys::cudnnStatus_t::*;
    matches!(
        status,
        CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED
            | CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH
            | CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE
    )
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

    #[test]
    fn nhwc_strides_in_nchw_order() {
        // x: n=2, c=3, h=4, w=5 packed NHWC: c is innermost, then w, then h, then n.
        assert_eq!(nhwc_strides([2, 3, 4, 5]), [60, 1, 15, 3]);
        // KRSC filters, k=8, c/groups=4, r=3, s=2.
        assert_eq!(nhwc_strides([8, 4, 3, 2]), [24, 1, 8, 4]);
        // A 1x1 image is a matrix of n rows of c.
        assert_eq!(nhwc_strides([7, 16, 1, 1]), [16, 1, 16, 16]);
        // The strides address every element of a packed tensor once: the largest offset is len - 1.
        let dims = [2i64, 3, 4, 5];
        let strides = nhwc_strides(dims);
        let last: i64 = dims.iter().zip(strides).map(|(d, s)| (d - 1) * s).sum();
        assert_eq!(last, dims.iter().product::<i64>() - 1);
    }

    #[test]
    fn shapes_follow_the_spec() {
        let spec = ConvSpec::new(2, 9, 11, 12, 6, 3, 2).with_padding(2, 1).with_stride(1, 2).with_groups(3);
        let lens = spec.lens().unwrap();
        let shapes = TensorShapes::new(&spec, &lens).unwrap();
        assert_eq!(shapes.x, [2, 12, 9, 11]);
        assert_eq!(shapes.w, [6, 4, 3, 2], "filters see c / groups channels");
        assert_eq!(shapes.y, [2, 6, lens.p as i64, lens.q as i64]);
        assert_eq!((shapes.pad, shapes.stride, shapes.dilation), ([2, 1], [1, 2], [1, 1]));
        for (dims, len) in [(shapes.x, lens.x), (shapes.w, lens.w), (shapes.y, lens.y)] {
            assert_eq!(dims.iter().product::<i64>() as usize, len);
        }
    }

    /// Builds the operation, which needs no GPU, with the installed cuDNN: its attribute
    /// types, shapes and strides are then checked by cuDNN itself. Needs cuDNN 9 (not a
    /// GPU): run with `--ignored` where it is installed; `LD_LIBRARY_PATH` may point at a
    /// cuDNN wheel's `lib`. Fails when cuDNN does not load.
    #[test]
    #[ignore = "needs cuDNN 9"]
    fn operations_finalize_in_the_installed_cudnn() {
        load_cudnn9(SYMBOLS).expect("this test needs cuDNN 9");
        let specs = [
            ConvSpec::new(2, 9, 11, 8, 16, 3, 3).with_padding(1, 1).with_stride(2, 2),
            ConvSpec::new(1, 12, 10, 12, 6, 3, 2)
                .with_padding(2, 1)
                .with_stride(1, 2)
                .with_dilation(2, 1)
                .with_groups(3),
            ConvSpec::new(2, 7, 7, 8, 8, 3, 3).with_padding(1, 1).with_groups(8),
            ConvSpec::new(3, 5, 6, 16, 24, 1, 1),
        ];
        for spec in specs {
            let shapes = TensorShapes::new(&spec, &spec.lens().unwrap()).unwrap();
            for (dtype, size) in [(DType::F32, 4), (DType::F16, 2), (DType::BF16, 2)] {
                // cuDNN takes any power of two from the element size up.
                for alignments in [[16, 16, 16], [8, size, 2 * size]] {
                    let built = ConvOperation::new(cudnn_data_type(dtype).unwrap(), &shapes, alignments);
                    assert!(built.is_ok(), "{spec:?} {dtype} {alignments:?}: {:?}", built.err());
                }
            }
        }
        // An output whose size disagrees with the convolution is refused, as a typed error.
        let spec = ConvSpec::new(1, 8, 8, 4, 4, 3, 3);
        let mut shapes = TensorShapes::new(&spec, &spec.lens().unwrap()).unwrap();
        shapes.y[2] += 1;
        let refused = ConvOperation::new(sys::cudnnDataType_t::CUDNN_DATA_HALF, &shapes, [16; 3]);
        assert!(matches!(refused, Err(GpuError::Library { .. } | GpuError::Unsupported { .. })), "{:?}", refused.err());
    }

    #[test]
    fn alignment_is_the_largest_power_of_two_up_to_16() {
        assert_eq!(byte_alignment(0x7f00_0000_0000), 16);
        assert_eq!(byte_alignment(0x7f00_0000_0010), 16);
        assert_eq!(byte_alignment(0x7f00_0000_0008), 8);
        assert_eq!(byte_alignment(0x7f00_0000_0006), 2);
        assert_eq!(byte_alignment(0x7f00_0000_0003), 1);
        assert_eq!(byte_alignment(0), MAX_ALIGNMENT);
        assert_eq!(byte_alignment(1 << 63), 16);
    }

    #[test]
    fn knob_and_note_tables_match_the_bindings() {
        assert_eq!(KNOBS.len(), sys::cudnnBackendKnobType_t::CUDNN_KNOB_TYPE_COUNTS as usize);
        assert_eq!(NOTES.len(), sys::cudnnBackendNumericalNote_t::CUDNN_NUMERICAL_NOTE_TYPE_COUNT as usize);
        for (code, knob) in KNOBS.iter().enumerate() {
            assert_eq!(*knob as usize, code, "{knob:?}");
        }
        for (code, note) in NOTES.iter().enumerate() {
            assert_eq!(*note as usize, code, "{note:?}");
        }
    }

    #[test]
    fn knob_strings_are_readable() {
        use sys::cudnnBackendKnobType_t::*;
        let knobs = [(CUDNN_KNOB_TYPE_TILE_SIZE as u32, 3), (CUDNN_KNOB_TYPE_STAGES as u32, 4)];
        assert_eq!(knob_string(&knobs), "TILE_SIZE=3 STAGES=4");
        assert_eq!(knob_string(&[(CUDNN_KNOB_TYPE_SPLIT_K as u32, -1), (999, 2)]), "SPLIT_K=-1 KNOB_999=2");
        assert_eq!(knob_string(&[]), "");
        assert_eq!(note_name(sys::cudnnBackendNumericalNote_t::CUDNN_NUMERICAL_NOTE_TENSOR_CORE as u32), "TENSOR_CORE");
        assert_eq!(note_name(77), "NOTE_77");
    }

    #[test]
    fn notes_filter_as_the_baseline_promises() {
        use sys::cudnnBackendNumericalNote_t::*;
        let tensor_core = CUDNN_NUMERICAL_NOTE_TENSOR_CORE as u32;
        let fft = CUDNN_NUMERICAL_NOTE_FFT as u32;
        let down = CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS as u32;
        let reduced = CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION as u32;
        // Tensor cores: always for half types, for f32 only as TF32.
        assert_eq!(rejected_by_notes(&[tensor_core], DType::F16, Fp32Math::Ieee), None);
        assert_eq!(rejected_by_notes(&[tensor_core], DType::BF16, Fp32Math::Ieee), None);
        assert_eq!(rejected_by_notes(&[tensor_core], DType::F32, Fp32Math::Tf32), None);
        assert!(rejected_by_notes(&[fft, tensor_core], DType::F32, Fp32Math::Ieee).is_some());
        assert_eq!(rejected_by_notes(&[fft], DType::F32, Fp32Math::Ieee), None);
        assert_eq!(rejected_by_notes(&[], DType::F32, Fp32Math::Ieee), None);
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for math in [Fp32Math::Ieee, Fp32Math::Tf32] {
                assert_eq!(rejected_by_notes(&[fft, down], dtype, math), Some("DOWN_CONVERT_INPUTS"));
                assert_eq!(rejected_by_notes(&[reduced], dtype, math), Some("REDUCED_PRECISION_REDUCTION"));
            }
        }
    }

    #[test]
    fn search_failures_map_to_typed_errors() {
        use sys::cudnnStatus_t::*;
        let spec = ConvSpec::new(1, 4, 4, 8, 8, 3, 3);
        let error = |rejections: Vec<Rejection>| SearchFailure::NoPlan(rejections).into_error(&spec, DType::F16);
        let refused =
            |engine| Rejection::Finalize { engine, status: CUDNN_STATUS_NOT_SUPPORTED_SHAPE, reason: "".into() };
        let heuristic = Rejection::Heuristic { mode: "A", status: CUDNN_STATUS_NOT_SUPPORTED, reason: "".into() };

        assert!(matches!(error(vec![]), GpuError::Unsupported { .. }));
        assert!(matches!(error(vec![heuristic.clone(), refused(1), refused(2)]), GpuError::Unsupported { .. }));
        let too_big = Rejection::Workspace { engine: 3, bytes: 1 << 40, limit: 1 << 30 };
        let note = Rejection::Note { engine: 4, note: "DOWN_CONVERT_INPUTS" };
        assert!(matches!(error(vec![too_big, note, refused(5)]), GpuError::Unsupported { .. }));

        let ran = Rejection::Execute { engine: 6, status: CUDNN_STATUS_EXECUTION_FAILED, reason: "".into() };
        assert!(matches!(error(vec![refused(1), ran]), GpuError::Library { .. }));
        let internal = Rejection::Finalize { engine: 7, status: CUDNN_STATUS_INTERNAL_ERROR, reason: "".into() };
        assert!(matches!(error(vec![refused(1), internal]), GpuError::Library { .. }));

        let missing = Rejection::Heuristic {
            mode: "A",
            status: CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE,
            reason: "".into(),
        };
        assert!(matches!(error(vec![missing, refused(1)]), GpuError::LibraryMissing { .. }));
        let other = SearchFailure::Error(GpuError::NoDevice).into_error(&spec, DType::F16);
        assert!(matches!(other, GpuError::NoDevice));
    }

    #[test]
    fn algorithms_display_engine_knobs_and_time() {
        let algorithm = ConvAlgorithm {
            engine: 28,
            knobs: "TILE_SIZE=3 STAGES=4".into(),
            notes: vec!["TENSOR_CORE".into()],
            workspace_bytes: 4096,
            time_us: 12.345,
            heuristic: "A",
            rank: 1,
            candidates: 8,
            skipped: 2,
        };
        assert_eq!(
            algorithm.to_string(),
            "eng28 [TILE_SIZE=3 STAGES=4]: 12.35 us, workspace 4096 B, heuristic A rank 1, fastest of 8 (2 skipped), \
             notes TENSOR_CORE"
        );
        let plain = ConvAlgorithm { knobs: String::new(), notes: Vec::new(), ..algorithm };
        assert_eq!(
            plain.to_string(),
            "eng28: 12.35 us, workspace 4096 B, heuristic A rank 1, fastest of 8 (2 skipped)"
        );
    }
}
