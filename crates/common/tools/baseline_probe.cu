// Standalone probe of the vendor calls made (for cuDNN's convolution, once made) by
// crates/common/src/baselines/{cudnn,cublas}.rs,
// for telling a wrong call from a library limit or an environment effect.
// Build and run on the GPU host (cuDNN is dlopen'ed, so its headers need not be installed):
//   nvcc -std=c++17 baseline_probe.cu -lcublasLt -lcublas -lcuda -ldl -o probe
//   ./probe conv [VARIANT]                 cuDNN's legacy conv2d search, as cudnn.rs set it up before it
//                                          moved to the graph API, and variants
//   ./probe conv-driver [VARIANT]          the same with cudarc's driver-API context, stream, buffers
//   ./probe conv-threads N LOCK DRIVER     N threads searching at once (LOCK: 0 none, 1 setup, 2 search)
//   ./probe fp8 [VARIANT]                  cuBLASLt e4m3 x e4m3 -> bf16 in TN form, as cublas.rs, and variants
// Found with it on the H100 (cuBLAS 13.1): cublasLtMatmul returns NOT_SUPPORTED when the
// A and B scale pointers are 4 bytes apart (fp8 variant 0); 16-byte-aligned scales run (5, 8).
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

static thread_local FILE* g_out = stdout;

#define CK(x)                                                                          \
  do {                                                                                 \
    cudaError_t e_ = (x);                                                              \
    if (e_ != cudaSuccess) {                                                           \
      fprintf(g_out, "CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

// ---- cuDNN through dlopen -------------------------------------------------------------
typedef void* H;
typedef int St;
struct Perf {
  int algo;
  int status;
  float time;
  size_t memory;
  int determinism;
  int mathType;
  int reserved[3];
};
static void* lib;
template <class F>
F sym(const char* name) {
  void* p = dlsym(lib, name);
  if (!p) {
    fprintf(g_out, "missing symbol %s\n", name);
    exit(1);
  }
  return (F)p;
}
#define DNN(name, ...) sym<St (*)(__VA_ARGS__)>(#name)

static const char* dnn_err(St s) {
  return sym<const char* (*)(St)>("cudnnGetErrorString")(s);
}
static void last_error() {
  char buf[4096] = {0};
  sym<void (*)(char*, size_t)>("cudnnGetLastErrorString")(buf, sizeof buf);
  if (buf[0]) fprintf(g_out, "      last error: %s\n", buf);
}
#define D(call)                                                  \
  do {                                                           \
    St s_ = (call);                                              \
    if (s_ != 0) {                                               \
      fprintf(g_out, "    %s -> %d %s\n", #call, s_, dnn_err(s_));       \
      last_error();                                              \
    }                                                            \
  } while (0)

// Driver mode: the context, stream and buffers are made as cudarc makes them (primary
// context made current through the driver API, non-blocking stream, stream-ordered
// cuMemAllocAsync), with no runtime call before cuDNN's.
static bool g_driver = false;
// conv-threads: 0 no lock, 1 a process-wide lock around the version check and cudnnCreate,
// 2 a lock around the version check, cudnnCreate and the algorithm search.
static int g_lock_mode = 0;
static std::mutex g_mu;
static void* dev_alloc(size_t bytes, cudaStream_t stream) {
  if (!g_driver) {
    void* p;
    CK(cudaMalloc(&p, bytes));
    CK(cudaMemset(p, 0, bytes));
    return p;
  }
  CUdeviceptr p;
  CUresult r = cuMemAllocAsync(&p, bytes, (CUstream)stream);
  if (r == CUDA_SUCCESS) r = cuMemsetD8Async(p, 0, bytes, (CUstream)stream);
  if (r == CUDA_SUCCESS) r = cuStreamSynchronize((CUstream)stream);
  if (r != CUDA_SUCCESS) {
    fprintf(g_out, "driver alloc failed %d\n", (int)r);
    exit(1);
  }
  return (void*)p;
}
static void dev_free(void* p, cudaStream_t stream) {
  if (g_driver) cuMemFreeAsync((CUdeviceptr)p, (CUstream)stream);
  else cudaFree(p);
}
static void dev_sync(cudaStream_t stream) {
  if (g_driver) {
    CUresult r = cuStreamSynchronize((CUstream)stream);
    if (r != CUDA_SUCCESS) fprintf(g_out, "    cuStreamSynchronize -> %d\n", (int)r);
  } else {
    CK(cudaDeviceSynchronize());
  }
}

enum { NCHW = 0, NHWC = 1 };
enum { FLOAT = 0, HALF = 2, BF16 = 9 };
enum { DEFAULT_MATH = 0, TENSOR_OP = 1, FMA = 3 };
struct ConvCase {
  const char* name;
  int dtype, n, h, w, c, k, r, s, pad, stride;
};

static void conv_variant(const ConvCase& cc, int variant, cudaStream_t stream) {
  static const char* names[] = {"rust-exact", "nchw", "default-math", "no-stream", "no-math-call", "nhwc-via-strides"};
  fprintf(g_out, "  [%s %s]\n", cc.name, names[variant]);
  int n = cc.n, c = cc.c, h = cc.h, w = cc.w, k = cc.k, r = cc.r, s = cc.s;
  int p = (h + 2 * cc.pad - r) / cc.stride + 1, q = (w + 2 * cc.pad - s) / cc.stride + 1;
  size_t esz = cc.dtype == FLOAT ? 4 : 2;
  int fmt = variant == 1 ? NCHW : NHWC;
  int math = cc.dtype == FLOAT ? FMA : TENSOR_OP;
  if (variant == 2) math = DEFAULT_MATH;

  H handle, xd, yd, wd, cd;
  std::unique_lock<std::mutex> guard(g_mu, std::defer_lock);
  if (g_lock_mode) guard.lock();
  D(sym<St (*)()>("cudnnCnnVersionCheck")());
  D(DNN(cudnnCreate, H*)(&handle));
  if (g_lock_mode == 1) guard.unlock();
  if (variant != 3) D(DNN(cudnnSetStream, H, cudaStream_t)(handle, stream));
  D(DNN(cudnnCreateTensorDescriptor, H*)(&xd));
  D(DNN(cudnnCreateTensorDescriptor, H*)(&yd));
  if (variant == 5) {
    auto ex = DNN(cudnnSetTensor4dDescriptorEx, H, int, int, int, int, int, int, int, int, int);
    D(ex(xd, cc.dtype, n, c, h, w, h * w * c, 1, w * c, c));
    D(ex(yd, cc.dtype, n, k, p, q, p * q * k, 1, q * k, k));
  } else {
    auto set4 = DNN(cudnnSetTensor4dDescriptor, H, int, int, int, int, int, int);
    D(set4(xd, fmt, cc.dtype, n, c, h, w));
    D(set4(yd, fmt, cc.dtype, n, k, p, q));
  }
  D(DNN(cudnnCreateFilterDescriptor, H*)(&wd));
  D(DNN(cudnnSetFilter4dDescriptor, H, int, int, int, int, int, int)(wd, cc.dtype, fmt, k, c, r, s));
  D(DNN(cudnnCreateConvolutionDescriptor, H*)(&cd));
  D(DNN(cudnnSetConvolution2dDescriptor, H, int, int, int, int, int, int, int, int)(cd, cc.pad, cc.pad, cc.stride,
                                                                                   cc.stride, 1, 1, 1, FLOAT));
  D(DNN(cudnnSetConvolutionGroupCount, H, int)(cd, 1));
  if (variant != 4) D(DNN(cudnnSetConvolutionMathType, H, int)(cd, math));
  int dims[4];
  D(DNN(cudnnGetConvolution2dForwardOutputDim, H, H, H, int*, int*, int*, int*)(cd, xd, wd, &dims[0], &dims[1],
                                                                                &dims[2], &dims[3]));
  fprintf(g_out, "    out dims %d %d %d %d (expect %d %d %d %d)\n", dims[0], dims[1], dims[2], dims[3], n, k, p, q);

  size_t largest = 0;
  for (int a = 0; a < 8; ++a) {
    size_t b = 0;
    St st = DNN(cudnnGetConvolutionForwardWorkspaceSize, H, H, H, H, H, int, size_t*)(handle, xd, wd, cd, yd, a, &b);
    fprintf(g_out, "    ws algo %d: %d (%s) %zu\n", a, st, dnn_err(st), b);
    if (st == 0 && b < (2ull << 30)) largest = b > largest ? b : largest;
  }
  void* px = dev_alloc(n * h * w * c * esz, stream);
  void* pw = dev_alloc(k * r * s * c * esz, stream);
  void* py = dev_alloc(n * p * q * k * esz, stream);
  void* ws = largest ? dev_alloc(largest, stream) : nullptr;

  Perf perf[8];
  memset(perf, 0, sizeof perf);
  int returned = 0;
  D(DNN(cudnnGetConvolutionForwardAlgorithm_v7, H, H, H, H, H, int, int*, Perf*)(handle, xd, wd, cd, yd, 8, &returned,
                                                                                 perf));
  fprintf(g_out, "    v7 heuristics (%d):", returned);
  for (int i = 0; i < returned; ++i) fprintf(g_out, " algo%d/st%d/math%d/ws%zu", perf[i].algo, perf[i].status, perf[i].mathType, perf[i].memory);
  fprintf(g_out, "\n");

  memset(perf, 0, sizeof perf);
  returned = 0;
  St st = DNN(cudnnFindConvolutionForwardAlgorithmEx, H, H, const void*, H, const void*, H, H, void*, int, int*,
              Perf*, void*, size_t)(handle, xd, px, wd, pw, cd, yd, py, 8, &returned, perf, ws, largest);
  if (guard.owns_lock()) guard.unlock();
  fprintf(g_out, "    FindEx -> %d %s, returned %d (workspace %zu)\n", st, dnn_err(st), returned, largest);
  if (st) last_error();
  for (int i = 0; i < returned; ++i)
    fprintf(g_out, "      algo %d status %d (%s) time %.4f mem %zu math %d\n", perf[i].algo, perf[i].status,
           dnn_err(perf[i].status), perf[i].time, perf[i].memory, perf[i].mathType);

  float alpha = 1, beta = 0;
  for (int a = 0; a < 2; ++a) {
    size_t b = 0;
    DNN(cudnnGetConvolutionForwardWorkspaceSize, H, H, H, H, H, int, size_t*)(handle, xd, wd, cd, yd, a, &b);
    St f = DNN(cudnnConvolutionForward, H, const void*, H, const void*, H, const void*, H, int, void*, size_t,
               const void*, H, void*)(handle, &alpha, xd, px, wd, pw, cd, a, ws, largest, &beta, yd, py);
    fprintf(g_out, "    ConvolutionForward algo %d -> %d %s\n", a, f, dnn_err(f));
    if (f) last_error();
  }
  dev_sync(stream);
  dev_free(px, stream);
  dev_free(pw, stream);
  dev_free(py, stream);
  if (ws) dev_free(ws, stream);
  dev_sync(stream);
}

static void probe_conv(int only) {
  lib = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_GLOBAL);
  if (!lib) {
    fprintf(g_out, "dlopen libcudnn.so.9: %s\n", dlerror());
    return;
  }
  fprintf(g_out, "cudnnGetVersion %zu cudart %zu\n", sym<size_t (*)()>("cudnnGetVersion")(),
         sym<size_t (*)()>("cudnnGetCudartVersion")());
  for (const char* v : {"cudnnGraphVersionCheck", "cudnnOpsVersionCheck", "cudnnCnnVersionCheck"}) {
    St s = sym<St (*)()>(v)();
    fprintf(g_out, "%s -> %d %s\n", v, s, dnn_err(s));
  }
  cudaStream_t stream;
  if (g_driver) {
    CUstream s;
    if (cuStreamCreate(&s, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) exit(1);
    stream = (cudaStream_t)s;
  } else {
    CK(cudaStreamCreate(&stream));
  }
  ConvCase cases[] = {{"f32 2x9x11x8 k16 3x3 p1 s2", FLOAT, 2, 9, 11, 8, 16, 3, 3, 1, 2},
                      {"f16 1x8x8x8 k8 3x3", HALF, 1, 8, 8, 8, 8, 3, 3, 0, 1}};
  for (auto& cc : cases)
    for (int v = 0; v < 6; ++v)
      if (only < 0 || only == v) conv_variant(cc, v, stream);
}

static void probe_conv_threads(int threads) {
  lib = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_GLOBAL);
  if (!lib) {
    fprintf(g_out, "dlopen libcudnn.so.9: %s\n", dlerror());
    return;
  }
  ConvCase cases[] = {{"f32 2x9x11x8 k16 3x3 p1 s2", FLOAT, 2, 9, 11, 8, 16, 3, 3, 1, 2},
                      {"f16 1x8x8x8 k8 3x3", HALF, 1, 8, 8, 8, 8, 3, 3, 0, 1}};
  std::vector<std::string> logs(threads);
  std::atomic<int> ready{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      char* buf = nullptr;
      size_t len = 0;
      g_out = open_memstream(&buf, &len);
      cudaStream_t stream;
      if (g_driver) {
        CUstream s;
        cuCtxSetCurrent(nullptr);
        CUdevice dev;
        CUcontext ctx;
        cuDeviceGet(&dev, 0);
        cuDevicePrimaryCtxRetain(&ctx, dev);
        cuCtxSetCurrent(ctx);
        cuStreamCreate(&s, CU_STREAM_NON_BLOCKING);
        stream = (cudaStream_t)s;
      } else {
        cudaSetDevice(0);
        cudaStreamCreate(&stream);
      }
      ready++;
      while (ready.load() < threads) {
      }
      conv_variant(cases[t % 2], 0, stream);
      fclose(g_out);
      logs[t] = std::string(buf, len);
      free(buf);
    });
  for (auto& th : pool) th.join();
  for (int t = 0; t < threads; ++t) printf("--- thread %d\n%s", t, logs[t].c_str());
}

// ---- cuBLASLt fp8 ---------------------------------------------------------------------
#define L(call)                                                                    \
  do {                                                                             \
    cublasStatus_t s_ = (call);                                                    \
    if (s_ != CUBLAS_STATUS_SUCCESS) fprintf(g_out, "    %s -> %d %s\n", #call, (int)s_, cublasGetStatusName(s_)); \
  } while (0)

// Variants: 0 rust-exact, 1 no FAST_ACCUM attribute, 2 no scale pointers, 3 D separate from C,
// 4 every heuristic result tried, 5 16-byte aligned scale for B (own allocation),
// 6 FAST_ACCUM as int32, 7 A/B/C at 16-byte offsets (scales as 5), 8 B scale 16 bytes after A's.
static void fp8_variant(int m, int n, int k, bool row_c, float beta, int variant, cublasLtHandle_t lt,
                        cudaStream_t stream, void* workspace, size_t ws_bytes) {
  fprintf(g_out, "  [fp8 %dx%dx%d C %s beta %.1f variant %d]\n", m, n, k, row_c ? "row" : "col", beta, variant);
  // Spec: A m x k row-major (ld k), B k x n col-major (ld k), C m x n.
  // Column-major call: not swapped -> first=A (T), second=B (N), C m x n ld m;
  // swapped (row C) -> first=B (T), second=A (N), C' n x m ld n.
  int cm = row_c ? n : m, cn = row_c ? m : n, ldc = cm;
  std::vector<__nv_fp8_e4m3> ha(m * k), hb(k * n);
  std::vector<float> fa(m * k), fb(k * n);
  srand(1);
  for (int i = 0; i < m * k; ++i) { ha[i] = __nv_fp8_e4m3((rand() % 9 - 4) * 0.5f); fa[i] = float(ha[i]); }
  for (int i = 0; i < k * n; ++i) { hb[i] = __nv_fp8_e4m3((rand() % 9 - 4) * 0.5f); fb[i] = float(hb[i]); }
  std::vector<__nv_bfloat16> hc(m * n);
  for (int i = 0; i < m * n; ++i) hc[i] = __float2bfloat16((rand() % 5 - 2) * 1.0f);
  unsigned char *da, *db;
  __nv_bfloat16 *dc, *dd;
  float* dscale;
  float* dscale_b2;
  int off = variant == 7 ? 16 : 0;
  CK(cudaMalloc(&da, m * k + 256));
  CK(cudaMalloc(&db, k * n + 256));
  CK(cudaMalloc(&dc, m * n * 2 + 256));
  CK(cudaMalloc(&dd, m * n * 2 + 256));
  CK(cudaMalloc(&dscale, 64));
  CK(cudaMalloc(&dscale_b2, 16));
  da += off; db += off;
  dc = (__nv_bfloat16*)((char*)dc + off);
  float scales[2] = {0.5f, 0.25f};
  CK(cudaMemcpy(da, ha.data(), m * k, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(db, hb.data(), k * n, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dc, hc.data(), m * n * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dscale, scales, 8, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dscale_b2, scales + 1, 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dscale + 4, scales + 1, 4, cudaMemcpyHostToDevice));

  cublasLtMatmulDesc_t desc;
  L(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  int32_t ta = 1, tb = 0;
  L(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  L(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  // first operand scale: A's unless swapped.
  void* s_first = row_c ? (void*)(dscale + 1) : (void*)dscale;
  void* s_second = row_c ? (void*)dscale : (void*)(dscale + 1);
  if (variant == 5 || variant == 7) {
    if (row_c) s_first = dscale_b2; else s_second = dscale_b2;
  }
  if (variant == 8) {
    if (row_c) s_first = dscale + 4; else s_second = dscale + 4;
  }
  if (variant != 2) {
    L(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &s_first, sizeof s_first));
    L(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &s_second, sizeof s_second));
  }
  if (variant == 6) {
    int32_t fa32 = 0;
    L(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fa32, sizeof fa32));
  } else if (variant != 1) {
    int8_t fa8 = 0;
    L(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fa8, sizeof fa8));
  }
  cublasLtMatrixLayout_t lf, ls, lc;
  L(cublasLtMatrixLayoutCreate(&lf, CUDA_R_8F_E4M3, k, cm, k));
  L(cublasLtMatrixLayoutCreate(&ls, CUDA_R_8F_E4M3, k, cn, k));
  L(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, cm, cn, ldc));
  cublasLtMatmulPreference_t pref;
  L(cublasLtMatmulPreferenceCreate(&pref));
  uint64_t maxws = ws_bytes;
  L(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &maxws, sizeof maxws));
  cublasLtMatmulHeuristicResult_t heur[8];
  memset(heur, 0, sizeof heur);
  int found = 0;
  int want = variant == 4 ? 8 : 1;
  L(cublasLtMatmulAlgoGetHeuristic(lt, desc, lf, ls, lc, lc, pref, want, heur, &found));
  fprintf(g_out, "    heuristic found %d\n", found);
  const void* first = row_c ? db : da;
  const void* second = row_c ? da : db;
  float alpha = 1.0f;
  for (int i = 0; i < found; ++i) {
    void* out = variant == 3 ? (void*)dd : (void*)dc;
    cublasStatus_t st = cublasLtMatmul(lt, desc, &alpha, first, lf, second, ls, &beta, dc, lc, out, lc, &heur[i].algo,
                                       workspace, ws_bytes, stream);
    CK(cudaStreamSynchronize(stream));
    fprintf(g_out, "    matmul heuristic[%d] (ws %zu state %d) -> %d %s\n", i, heur[i].workspaceSize, (int)heur[i].state, (int)st,
           cublasGetStatusName(st));
    if (st == CUBLAS_STATUS_SUCCESS) {
      std::vector<__nv_bfloat16> ho(m * n);
      CK(cudaMemcpy(ho.data(), out, m * n * 2, cudaMemcpyDeviceToHost));
      double maxerr = 0;
      for (int i2 = 0; i2 < m; ++i2)
        for (int j = 0; j < n; ++j) {
          double acc = 0;
          for (int p = 0; p < k; ++p) acc += double(fa[i2 * k + p]) * 0.5 * double(fb[j * k + p]) * 0.25;
          int at = row_c ? i2 * n + j : j * m + i2;
          double ref = alpha * acc + beta * double(__bfloat162float(hc[at]));
          maxerr = fmax(maxerr, fabs(ref - double(__bfloat162float(ho[at]))));
        }
      fprintf(g_out, "      max abs err vs reference: %g\n", maxerr);
    }
  }
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(lf);
  cublasLtMatrixLayoutDestroy(ls);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(desc);
}

static void probe_fp8(int only) {
  fprintf(g_out, "cublasLtGetVersion %zu cudart %zu\n", cublasLtGetVersion(), cublasLtGetCudartVersion());
  cublasLtHandle_t lt;
  L(cublasLtCreate(&lt));
  cudaStream_t stream;
  CK(cudaStreamCreate(&stream));
  size_t ws_bytes = 32 << 20;
  void* ws;
  CK(cudaMalloc(&ws, ws_bytes));
  for (int v = 0; v < 9; ++v) {
    if (only >= 0 && only != v) continue;
    fp8_variant(64, 48, 128, false, 0.0f, v, lt, stream, ws, ws_bytes);
    if (v == 0 || only >= 0) {
      fp8_variant(64, 48, 128, true, 0.0f, v, lt, stream, ws, ws_bytes);
      fp8_variant(64, 48, 128, false, 1.5f, v, lt, stream, ws, ws_bytes);
      fp8_variant(208, 144, 96, true, 1.5f, v, lt, stream, ws, ws_bytes);
    }
  }
}

int main(int argc, char** argv) {
  const char* what = argc > 1 ? argv[1] : "all";
  int only = argc > 2 ? atoi(argv[2]) : -1;
  if (!strcmp(what, "conv-threads")) {
    // ./probe conv-threads THREADS LOCKMODE DRIVER
    g_lock_mode = argc > 3 ? atoi(argv[3]) : 0;
    g_driver = argc > 4 && atoi(argv[4]);
    if (g_driver) {
      CUdevice dev;
      CUcontext ctx;
      if (cuInit(0) || cuDeviceGet(&dev, 0) || cuDevicePrimaryCtxRetain(&ctx, dev) || cuCtxSetCurrent(ctx)) return 1;
    } else {
      CK(cudaSetDevice(0));
      CK(cudaFree(0));
    }
    probe_conv_threads(only < 1 ? 2 : only);
    return 0;
  }
  if (!strcmp(what, "conv-driver")) {
    // As cudarc: cuInit, retain the primary context, make it current; no runtime call.
    CUdevice dev;
    CUcontext ctx;
    if (cuInit(0) || cuDeviceGet(&dev, 0) || cuDevicePrimaryCtxRetain(&ctx, dev) || cuCtxSetCurrent(ctx)) {
      fprintf(g_out, "driver init failed\n");
      return 1;
    }
    g_driver = true;
    probe_conv(only);
    return 0;
  }
  CK(cudaSetDevice(0));
  CK(cudaFree(0));
  if (!strcmp(what, "all") || !strcmp(what, "conv")) probe_conv(only);
  if (!strcmp(what, "all") || !strcmp(what, "fp8")) probe_fp8(only);
  return 0;
}
