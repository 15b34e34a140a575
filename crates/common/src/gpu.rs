//! The GPU: context and stream, device facts, and typed buffers (upload, download,
//! random fill, NaN poisoning, alignment checks).

use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use cudarc::driver::{sys, CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceSlice};

use crate::element::{DType, Element};
use crate::error::{check_launch, GpuError, GpuResult};

/// A context on one GPU and the stream every launch of ours and of the baselines uses.
///
/// cudarc's per-buffer event tracking is off (see [`Gpu::open`]): every buffer made through
/// a `Gpu` is used on its one [`Gpu::stream`], whose order is the only synchronization needed.
/// A buffer handed to another stream (a second `Gpu`, or a stream made from `ctx`) must be
/// synchronized by hand: that stream must wait for this one, and this one for it before the
/// buffer is dropped.
#[derive(Clone)]
pub struct Gpu {
    /// The device's primary context.
    pub ctx: Arc<CudaContext>,
    /// The stream every launch of this `Gpu` goes on: ours, the baselines', copies and fills.
    pub stream: Arc<CudaStream>,
    sm_count: usize,
    /// Scratch that calls on `stream` borrow (see [`Gpu::with_workspace`]); shared by clones.
    workspace: Arc<Mutex<Option<CudaSlice<u8>>>>,
}

/// What a record needs to say about the card it ran on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceFacts {
    /// The device's name, e.g. "NVIDIA H200".
    pub name: String,
    /// (major, minor): (9, 0) for Hopper.
    pub compute_capability: (i32, i32),
    /// Streaming multiprocessors.
    pub sm_count: i32,
    /// L2 cache size in bytes.
    pub l2_bytes: i32,
    /// The most shared memory a block can opt in to, in bytes.
    pub max_smem_per_block_optin: i32,
    /// The driver's version string (`/proc/driver/nvidia/version`), else the CUDA version it supports.
    pub driver: String,
    /// Peak SM clock the driver reports.
    pub sm_clock_max_mhz: i32,
    /// Peak memory clock the driver reports.
    pub mem_clock_mhz: i32,
    /// Device memory in bytes.
    pub total_mem_bytes: usize,
    /// The card's PCI address as nvidia-smi writes it (`00000000:19:00.0`), so a tool that
    /// numbers GPUs its own way (nvidia-smi's `-i`) can be pointed at this one.
    pub pci_bus_id: String,
}

/// Is the driver library loadable at all? Checked before any cudarc call, which would panic.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen libcuda.
    unsafe { sys::is_culib_present() }
}

impl Gpu {
    /// Opens GPU `ordinal` with a fresh non-blocking stream. Fails with a typed error when
    /// there is no driver, no GPU, or the GPU is not a Hopper.
    pub fn new(ordinal: usize) -> GpuResult<Gpu> {
        let gpu = Self::open(ordinal)?;
        let (major, minor) = gpu.ctx.compute_capability()?;
        if major != 9 {
            return Err(GpuError::UnsupportedDevice { name: gpu.ctx.name()?, major, minor });
        }
        Ok(gpu)
    }

    /// Opens any CUDA GPU, Hopper or not (device facts, baselines).
    pub fn open(ordinal: usize) -> GpuResult<Gpu> {
        if !driver_present() {
            return Err(GpuError::NoDriver);
        }
        let count = CudaContext::device_count().map_err(|e| match e.0 {
            sys::CUresult::CUDA_ERROR_NO_DEVICE => GpuError::NoDevice,
            _ => GpuError::Driver(e),
        })? as usize;
        if count == 0 {
            return Err(GpuError::NoDevice);
        }
        if ordinal >= count {
            return Err(GpuError::NoSuchDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal)?;
        // Once a context has a non-default stream, cudarc gives every buffer a read and a
        // write event and, at each use of the buffer (`device_ptr`), makes the using stream
        // wait on the last write and records a new event after the launch; the buffer's drop
        // waits on both. That is a cuStreamWaitEvent and a cuEventRecord per operand inside
        // every timed region, for ordering that one stream already gives. Every launch in
        // this project (our kernels through `cu_stream()`, cuBLAS/cuDNN/CUB bound to it,
        // copies, fills and the timer's events) goes on this Gpu's one `stream`, and a
        // buffer is freed on the stream that allocated it (cuMemFreeAsync), so cudarc's
        // three conditions for turning tracking off hold: no buffer is freed while another
        // stream uses it, none is used on another stream before its allocation completes,
        // none is written by two streams at once. `CudaContext::new` returns a fresh
        // `Arc` per call, so this flag is this Gpu's alone; it is set before any stream or
        // buffer exists, so no buffer of this Gpu carries events.
        // SAFETY: as above; the caveat for buffers handed to other streams is on `Gpu`.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream()?;
        let sm_count = read_sm_count(&ctx)?;
        Ok(Gpu { ctx, stream, sm_count, workspace: Arc::default() })
    }

    /// Streaming multiprocessors of this GPU, read once when it was opened.
    pub fn sm_count(&self) -> usize {
        self.sm_count
    }

    /// The raw stream to hand to an `extern "C"` launcher as `cudaStream_t`.
    pub fn cu_stream(&self) -> *mut std::ffi::c_void {
        self.stream.cu_stream() as *mut std::ffi::c_void
    }

    /// Runs `f` with at least `bytes` of device scratch, for work enqueued on [`Gpu::stream`]
    /// (a GEMM's operands repacked for TMA, say). The scratch grows to the largest request
    /// and is kept, so a call allocates once, not per launch. Work enqueued by `f` may still
    /// be running when the next caller gets the same bytes: that is safe because both are on
    /// the one stream, in order. Do not hand the scratch to another stream.
    pub fn with_workspace<R>(&self, bytes: usize, f: impl FnOnce(&mut CudaSlice<u8>) -> R) -> GpuResult<R> {
        // A poisoned lock only means a caller panicked; the buffer itself is still valid.
        let mut cached = self.workspace.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cached.as_ref().is_none_or(|w| w.len() < bytes) {
            *cached = None; // freed (stream-ordered) before the larger one is allocated
                            // SAFETY: scratch contents are never read before the caller writes them.
            *cached = Some(unsafe { self.stream.alloc::<u8>(bytes.max(1)) }?);
        }
        Ok(f(cached.as_mut().expect("allocated above")))
    }

    /// Waits for everything enqueued on the stream.
    pub fn synchronize(&self) -> GpuResult<()> {
        Ok(self.stream.synchronize()?)
    }

    /// The card's name, SMs, caches, clocks, memory and driver version.
    pub fn facts(&self) -> GpuResult<DeviceFacts> {
        use sys::CUdevice_attribute as A;
        let attr = |a| self.ctx.attribute(a);
        let cuda_version = {
            let mut v = 0;
            // SAFETY: writes one int.
            unsafe { sys::cuDriverGetVersion(&mut v) };
            format!("CUDA {}.{}", v / 1000, (v % 1000) / 10)
        };
        let driver = std::fs::read_to_string("/proc/driver/nvidia/version")
            .ok()
            .and_then(|text| driver_version_from_proc(&text))
            .unwrap_or(cuda_version);
        Ok(DeviceFacts {
            name: self.ctx.name()?,
            compute_capability: self.ctx.compute_capability()?,
            sm_count: self.sm_count as i32,
            l2_bytes: attr(A::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?,
            max_smem_per_block_optin: attr(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?,
            driver,
            sm_clock_max_mhz: attr(A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)? / 1000,
            mem_clock_mhz: attr(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)? / 1000,
            total_mem_bytes: self.ctx.total_mem()?,
            pci_bus_id: pci_bus_id(
                attr(A::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?,
                attr(A::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?,
                attr(A::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?,
            ),
        })
    }

    /// Copies `host` into a new device buffer.
    pub fn upload<T: Element>(&self, host: &[T]) -> GpuResult<CudaSlice<T>> {
        Ok(self.stream.clone_htod(host)?)
    }

    /// Copies a device buffer into a new host vector (waits for the stream).
    pub fn download<T: Element, S: DevicePtr<T>>(&self, dev: &S) -> GpuResult<Vec<T>> {
        Ok(self.stream.clone_dtoh(dev)?)
    }

    /// A buffer of `n` zeros.
    pub fn zeros<T: Element>(&self, n: usize) -> GpuResult<CudaSlice<T>> {
        Ok(self.stream.alloc_zeros(n)?)
    }

    /// `n` seeded standard-normal values, generated on the host and uploaded (the values of
    /// [`crate::random::normal`]).
    pub fn random_normal<T: Element>(&self, n: usize, seed: u64) -> GpuResult<CudaSlice<T>> {
        self.upload(&crate::random::normal::<T>(n, seed))
    }

    /// `n` seeded standard-normal values generated on the GPU (see
    /// [`Gpu::fill_random_normal`]): for inputs too large to make on the host quickly.
    pub fn random_normal_on_device<T: Element>(&self, n: usize, seed: u64) -> GpuResult<CudaSlice<T>> {
        // SAFETY: every element is written by the fill below, on this stream, before any
        // later use of the buffer can read it.
        let mut buf = unsafe { self.stream.alloc::<T>(n) }?;
        self.fill_random_normal(&mut buf, seed)?;
        Ok(buf)
    }

    /// A buffer of `n` NaNs.
    pub fn poisoned<T: Element>(&self, n: usize) -> GpuResult<CudaSlice<T>> {
        let mut buf = self.zeros::<T>(n)?;
        self.poison(&mut buf)?;
        Ok(buf)
    }

    /// Fills a buffer with NaN so that any element a kernel fails to write shows (`i64`
    /// buffers: see [`DType::nan_bits`]).
    pub fn poison<T: Element, S: DevicePtrMut<T>>(&self, buf: &mut S) -> GpuResult<()> {
        let bits = u64::from(T::DTYPE.nan_bits());
        self.fill_bits(buf, bits | bits << 32)
    }

    /// Sets every element of `buf` to `value`, on the stream: a driver memset for 1-, 2- and
    /// 4-byte types, a kernel for 8-byte ones.
    pub fn fill_constant<T: Element, S: DevicePtrMut<T>>(&self, buf: &mut S, value: T) -> GpuResult<()> {
        self.fill_bits(buf, element_bits(value))
    }

    /// Fills `buf` with seeded standard-normal values generated on the GPU, on the stream.
    ///
    /// Element `i` of `buf` depends only on `seed` and `i` (a counter-based generator:
    /// SplitMix64 at position `i`, then Box-Muller; `kernels/runtime.cu`), so a seed gives
    /// the same values for any length and launch shape, and a shorter buffer gets a prefix. The values are
    /// not those of the host [`Gpu::random_normal`]. They are rounded to `T` (`i64`: to the
    /// nearest integer) and lie within about 6.7 of zero.
    pub fn fill_random_normal<T: Element, S: DevicePtrMut<T>>(&self, buf: &mut S, seed: u64) -> GpuResult<()> {
        let (name, entry) = fill_normal_entry(T::DTYPE);
        let n = buf.len();
        if n == 0 {
            return Ok(());
        }
        self.ctx.bind_to_thread()?;
        let (ptr, _record) = buf.device_ptr_mut(&self.stream);
        // SAFETY: ptr addresses n elements of T (the entry's type) on this context.
        let code = unsafe { entry(ptr, n as i64, seed, self.sm_count as i32, self.cu_stream()) };
        check_launch(name, code)
    }

    /// Writes the low `T::DTYPE.size_bytes()` bytes of `bits` into every element.
    fn fill_bits<T: Element, S: DevicePtrMut<T>>(&self, buf: &mut S, bits: u64) -> GpuResult<()> {
        let n = buf.len();
        if n == 0 {
            return Ok(());
        }
        self.ctx.bind_to_thread()?;
        let (ptr, _record) = buf.device_ptr_mut(&self.stream);
        let stream = self.stream.cu_stream();
        // SAFETY: ptr addresses n elements of T on this context.
        unsafe {
            match T::DTYPE.size_bytes() {
                8 => {
                    check_launch("fill_u64", ckb_fill_u64(ptr, n as i64, bits, self.sm_count as i32, self.cu_stream()))?
                }
                4 => sys::cuMemsetD32Async(ptr, bits as u32, n, stream).result()?,
                2 => sys::cuMemsetD16Async(ptr, bits as u16, n, stream).result()?,
                _ => sys::cuMemsetD8Async(ptr, bits as u8, n, stream).result()?,
            }
        }
        Ok(())
    }
}

type FillNormalEntry = unsafe extern "C" fn(out: u64, n: i64, seed: u64, sm_count: i32, stream: *mut c_void) -> i32;

extern "C" {
    fn ckb_fill_u64(out: u64, n: i64, bits: u64, sm_count: i32, stream: *mut c_void) -> i32;
    fn ckb_fill_normal_f32(out: u64, n: i64, seed: u64, sm_count: i32, stream: *mut c_void) -> i32;
    fn ckb_fill_normal_f16(out: u64, n: i64, seed: u64, sm_count: i32, stream: *mut c_void) -> i32;
    fn ckb_fill_normal_bf16(out: u64, n: i64, seed: u64, sm_count: i32, stream: *mut c_void) -> i32;
    fn ckb_fill_normal_e4m3(out: u64, n: i64, seed: u64, sm_count: i32, stream: *mut c_void) -> i32;
    fn ckb_fill_normal_e5m2(out: u64, n: i64, seed: u64, sm_count: i32, stream: *mut c_void) -> i32;
    fn ckb_fill_normal_i64(out: u64, n: i64, seed: u64, sm_count: i32, stream: *mut c_void) -> i32;
}

/// The device random-normal fill for one element type (`kernels/runtime.cu`).
fn fill_normal_entry(dtype: DType) -> (&'static str, FillNormalEntry) {
    match dtype {
        DType::F32 => ("fill_normal_f32", ckb_fill_normal_f32),
        DType::F16 => ("fill_normal_f16", ckb_fill_normal_f16),
        DType::BF16 => ("fill_normal_bf16", ckb_fill_normal_bf16),
        DType::F8E4M3 => ("fill_normal_e4m3", ckb_fill_normal_e4m3),
        DType::F8E5M2 => ("fill_normal_e5m2", ckb_fill_normal_e5m2),
        DType::I64 => ("fill_normal_i64", ckb_fill_normal_i64),
    }
}

/// The bytes of an element as the low bytes of a u64 (little-endian, as the GPU stores it).
pub fn element_bits<T: Element>(value: T) -> u64 {
    const { assert!(std::mem::size_of::<T>() <= 8, "elements are at most 8 bytes") };
    let mut bytes = [0u8; 8];
    // SAFETY: every Element is a plain value type (a float, an fp8 byte or an integer)
    // without padding; its size_of::<T>() bytes fit in the buffer (checked above).
    unsafe {
        std::ptr::copy_nonoverlapping(&value as *const T as *const u8, bytes.as_mut_ptr(), std::mem::size_of::<T>())
    };
    u64::from_le_bytes(bytes)
}

/// The device's SM count; an error when the driver cannot say.
fn read_sm_count(ctx: &CudaContext) -> GpuResult<usize> {
    let sms = ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    usize::try_from(sms)
        .ok()
        .filter(|&n| n > 0)
        .ok_or(GpuError::Driver(cudarc::driver::DriverError(sys::CUresult::CUDA_ERROR_INVALID_VALUE)))
}

/// The driver's version in `/proc/driver/nvidia/version`'s first line ("NVRM version: NVIDIA
/// UNIX Open Kernel Module for x86_64  580.159.04  Release Build ..."): the first word made
/// of digits and at least one dot.
pub fn driver_version_from_proc(text: &str) -> Option<String> {
    text.lines()
        .next()?
        .split_whitespace()
        .find(|w| w.contains('.') && w.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(str::to_string)
}

/// A PCI address in nvidia-smi's form, `domain:bus:device.function` in hex with an 8-digit
/// domain; CUDA devices are function 0.
pub fn pci_bus_id(domain: i32, bus: i32, device: i32) -> String {
    format!("{domain:08X}:{bus:02X}:{device:02X}.0")
}

/// The device address of a buffer, for alignment checks and launchers.
pub fn device_address<T, S: DevicePtr<T>>(buf: &S, stream: &CudaStream) -> u64 {
    let (ptr, _sync) = buf.device_ptr(stream);
    ptr
}

/// Fails unless `buf` holds at least `needed` elements.
pub fn require_len<T, S: DeviceSlice<T>>(what: &'static str, buf: &S, needed: usize) -> GpuResult<()> {
    if buf.len() < needed {
        Err(GpuError::BufferTooSmall { what, needed, got: buf.len() })
    } else {
        Ok(())
    }
}

/// Fails unless the address is a multiple of `align` bytes.
pub fn require_aligned(what: &'static str, address: u64, align: usize) -> GpuResult<()> {
    if address.is_multiple_of(align as u64) {
        Ok(())
    } else {
        Err(GpuError::Misaligned { what, address, align })
    }
}

/// Size of `n` elements of `dtype` in bytes.
pub fn bytes_of(dtype: DType, n: usize) -> usize {
    dtype.size_bytes() * n
}

#[cfg(test)]
mod tests {
    #[test]
    fn pci_bus_id_in_nvidia_smi_form() {
        assert_eq!(super::pci_bus_id(0, 0x19, 0), "00000000:19:00.0");
        assert_eq!(super::pci_bus_id(1, 0xcb, 0x1f), "00000001:CB:1F.0");
    }
}
