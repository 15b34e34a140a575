//! The GPU: context and stream, device facts, and typed buffers (upload, download,
//! random fill, NaN poisoning, alignment checks).

use std::sync::Arc;

use cudarc::driver::{sys, CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceSlice};

use crate::element::{DType, Element};
use crate::error::{GpuError, GpuResult};

/// A context on one GPU and the stream every launch of ours and of the baselines uses.
#[derive(Clone)]
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
}

/// What a record needs to say about the card it ran on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceFacts {
    pub name: String,
    pub compute_capability: (i32, i32),
    pub sm_count: i32,
    pub l2_bytes: i32,
    pub max_smem_per_block_optin: i32,
    /// The driver's version string (`/proc/driver/nvidia/version`), else the CUDA version it supports.
    pub driver: String,
    /// Peak SM clock the driver reports.
    pub sm_clock_max_mhz: i32,
    pub mem_clock_mhz: i32,
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
        let stream = ctx.new_stream()?;
        Ok(Gpu { ctx, stream })
    }

    /// The raw stream to hand to an `extern "C"` launcher as `cudaStream_t`.
    pub fn cu_stream(&self) -> *mut std::ffi::c_void {
        self.stream.cu_stream() as *mut std::ffi::c_void
    }

    pub fn synchronize(&self) -> GpuResult<()> {
        Ok(self.stream.synchronize()?)
    }

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
            sm_count: attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
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

    pub fn upload<T: Element>(&self, host: &[T]) -> GpuResult<CudaSlice<T>> {
        Ok(self.stream.clone_htod(host)?)
    }

    pub fn download<T: Element, S: DevicePtr<T>>(&self, dev: &S) -> GpuResult<Vec<T>> {
        Ok(self.stream.clone_dtoh(dev)?)
    }

    pub fn zeros<T: Element>(&self, n: usize) -> GpuResult<CudaSlice<T>> {
        Ok(self.stream.alloc_zeros(n)?)
    }

    /// `n` seeded standard-normal values, generated on the host and uploaded.
    pub fn random_normal<T: Element>(&self, n: usize, seed: u64) -> GpuResult<CudaSlice<T>> {
        self.upload(&crate::random::normal::<T>(n, seed))
    }

    /// A buffer of `n` NaNs.
    pub fn poisoned<T: Element>(&self, n: usize) -> GpuResult<CudaSlice<T>> {
        let mut buf = self.zeros::<T>(n)?;
        self.poison(&mut buf)?;
        Ok(buf)
    }

    /// Fills a buffer with NaN so that any element a kernel fails to write shows.
    pub fn poison<T: Element, S: DevicePtrMut<T>>(&self, buf: &mut S) -> GpuResult<()> {
        let n = buf.len();
        let bits = T::DTYPE.nan_bits();
        let (ptr, _sync) = buf.device_ptr_mut(&self.stream);
        let stream = self.stream.cu_stream();
        // SAFETY: ptr addresses n elements of T on this context.
        let result = unsafe {
            match T::DTYPE.size_bytes() {
                4 => sys::cuMemsetD32Async(ptr, bits, n, stream),
                2 => sys::cuMemsetD16Async(ptr, bits as u16, n, stream),
                _ => sys::cuMemsetD8Async(ptr, bits as u8, n, stream),
            }
        };
        result.result()?;
        Ok(())
    }
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
    if address % align as u64 == 0 {
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
